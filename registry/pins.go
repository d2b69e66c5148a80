package registry

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmre/vmre"
)

// pin is one line of the pins file.
type pin struct {
	digest Digest
	line   int
}

// pinSet is the pins file, read.
type pinSet struct {
	// byName holds the pins by file name (the base name of each line's NAME).
	byName map[string]pin
	// err is set when a pins file is configured and could not be read: no
	// file can be verified, so every VM is refused.
	err error
}

// readPins reads the pins file at path ("" for none).
func readPins(path string) (pinSet, []*Problem) {
	if path == "" {
		return pinSet{}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		err = fmt.Errorf("read the pins file: %w", err)
		return pinSet{err: err}, []*Problem{{Entry: path, Kind: kindUnreadable, Err: err}}
	}
	return parsePins(data, path)
}

// parsePins parses sha256sum's output: one "HEX  NAME" (text mode) or
// "HEX *NAME" (binary mode) per line. A line starting with a backslash has
// an escaped NAME (\\ and \n), as sha256sum writes names holding those.
// Blank lines and lines starting with '#' are ignored. NAME counts by its
// base name, so both `sha256sum *` in the directory and `sha256sum DIR/*`
// outside it make a pins file.
func parsePins(data []byte, source string) (pinSet, []*Problem) {
	set := pinSet{byName: map[string]pin{}}
	var problems []*Problem
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entry := fmt.Sprintf("%s:%d", source, n)
		name, d, err := parsePinLine(line)
		if err != nil {
			problems = append(problems, &Problem{Entry: entry, Kind: kindMalformed,
				Err: fmt.Errorf("%w: %v; a pins line is `HEX  NAME` as sha256sum prints it", vmre.ErrInvalidConfig, err)})
			continue
		}
		if first, ok := set.byName[name]; ok {
			if first.digest != d {
				problems = append(problems, &Problem{Entry: entry, Kind: kindMalformed,
					Err: fmt.Errorf("%w: %s is pinned on line %d already, to another digest; the pin of line %d holds: remove one of the two lines",
						vmre.ErrInvalidConfig, name, first.line, first.line)})
			}
			continue
		}
		set.byName[name] = pin{digest: d, line: n}
	}
	if err := sc.Err(); err != nil {
		err = fmt.Errorf("read the pins file: %w", err)
		return pinSet{err: err}, append(problems, &Problem{Entry: source, Kind: kindUnreadable, Err: err})
	}
	return set, problems
}

func parsePinLine(line string) (name string, d Digest, err error) {
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	hexPart, rest, ok := strings.Cut(line, " ")
	if !ok {
		return "", d, fmt.Errorf("no space after the digest")
	}
	if d, err = parseDigest(hexPart); err != nil {
		return "", d, err
	}
	if len(rest) < 2 || (rest[0] != ' ' && rest[0] != '*') {
		return "", d, fmt.Errorf("the digest is followed by one space and a name; sha256sum writes two spaces, or a space and '*'")
	}
	name = rest[1:]
	if escaped {
		name = unescapeName(name)
	}
	if name = filepath.Base(name); name == "." || name == ".." || name == string(filepath.Separator) {
		return "", d, fmt.Errorf("no file name after the digest")
	}
	return name, d, nil
}

// unescapeName undoes sha256sum's escaping of a name: \\ and \n (and \r,
// which newer coreutils escape too).
func unescapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 'r':
				b.WriteByte('\r')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
