// An in-memory chain that only grows: the same chain as the Go example VM
// (cmd/examplevm), so the same genesis block has the same id in both.

import { createHash } from "node:crypto";

/** The payload of the genesis block; it makes the genesis id the same on every run. */
const genesisData = new TextEncoder().encode("vmre examplevm genesis");

/** The largest payload of one block: 1 MiB. */
export const maxDataBytes = 1 << 20;

export interface Block {
  height: bigint;
  id: string;
  parentId: string;
  data: Uint8Array;
  timestampMs: bigint;
}

/** Thrown for a payload over maxDataBytes. */
export class DataTooLargeError extends Error {}

/** Thrown for a height past the last accepted block. */
export class BlockNotFoundError extends Error {}

export class Chain {
  readonly #blocks: Block[] = [];

  constructor() {
    this.#blocks.push(newBlock(undefined, genesisData));
  }

  /** Appends a block holding data on top of the last accepted one. */
  build(data: Uint8Array): Block {
    if (data.length > maxDataBytes) {
      throw new DataTooLargeError(
        `block data too large: ${data.length} bytes, the limit is ${maxDataBytes} (1 MiB)`,
      );
    }
    const b = newBlock(this.lastAccepted(), data.slice());
    this.#blocks.push(b);
    return b;
  }

  /** Returns the block at height. */
  get(height: bigint): Block {
    const last = BigInt(this.#blocks.length - 1);
    if (height > last) {
      throw new BlockNotFoundError(
        `block not found at height ${height}: the last accepted height is ${last}`,
      );
    }
    return this.#blocks[Number(height)];
  }

  /** Returns the newest block. */
  lastAccepted(): Block {
    return this.#blocks[this.#blocks.length - 1];
  }
}

function newBlock(parent: Block | undefined, data: Uint8Array): Block {
  const height = parent ? parent.height + 1n : 0n;
  const parentId = parent ? parent.id : "";
  return {
    height,
    id: blockId(parentId, height, data),
    parentId,
    data,
    timestampMs: BigInt(Date.now()),
  };
}

/**
 * The hex SHA-256 of the parent id (as its hex text, empty for genesis),
 * the height as 8 big-endian bytes, and the data.
 */
function blockId(parentId: string, height: bigint, data: Uint8Array): string {
  const h = Buffer.alloc(8);
  h.writeBigUInt64BE(height);
  return createHash("sha256").update(parentId).update(h).update(data).digest("hex");
}
