package node

import (
	"slices"
	"strings"
	"testing"
)

// TestReconcile: before and after states of a plugin directory, and the
// actions that take the node from one to the other. No processes.
func TestReconcile(t *testing.T) {
	t.Parallel()
	// A version is its digest, and "+pin" when pinned: a pin added to the
	// same bytes is another version of the same digest.
	versionOf := func(s string) versionKey {
		digest, _, _ := strings.Cut(s, "+")
		return versionKey{key: s, digest: digest}
	}
	local := func(kv ...string) map[string]localState {
		m := map[string]localState{}
		for _, s := range kv {
			name, v, _ := strings.Cut(s, "=")
			removed := strings.HasSuffix(v, "!")
			m[name] = localState{version: versionOf(strings.TrimSuffix(v, "!")), removed: removed}
		}
		return m
	}
	want := func(kv ...string) map[string]versionKey {
		m := map[string]versionKey{}
		for _, s := range kv {
			name, v, _ := strings.Cut(s, "=")
			m[name] = versionOf(v)
		}
		return m
	}
	remotes := func(kv ...string) map[string]uint {
		m := map[string]uint{}
		for _, s := range kv {
			name, v, _ := strings.Cut(s, "=")
			m[name] = uint(v[0] - '0')
		}
		return m
	}
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	for _, c := range []struct {
		name        string
		have        current
		want        desired
		keepRemoved bool
		actions     []string
	}{
		{name: "first load", have: current{},
			want:    desired{local: want("b=1", "a=1"), remotes: remotes("far=1")},
			actions: []string{"add a", "add b", "enroll far"}},
		{name: "nothing changed", have: current{local: local("a=1"), remotes: remotes("far=1")},
			want: desired{local: want("a=1"), remotes: remotes("far=1")}},
		{name: "a file added", have: current{local: local("a=1")},
			want:    desired{local: want("a=1", "b=1")},
			actions: []string{"add b"}},
		{name: "a file removed", have: current{local: local("a=1", "b=1")},
			want:    desired{local: want("a=1")},
			actions: []string{"remove b"}},
		{name: "a file removed, kept running", have: current{local: local("a=1", "b=1")},
			want: desired{local: want("a=1")}, keepRemoved: true,
			actions: []string{"keep b"}},
		{name: "a removed file kept, still gone", have: current{local: local("a=1", "b=1!")},
			want: desired{local: want("a=1")}, keepRemoved: true},
		{name: "a removed file put back", have: current{local: local("a=1")},
			want:    desired{local: want("a=1", "b=1")},
			actions: []string{"add b"}},
		{name: "a kept file put back as it was", have: current{local: local("b=1!")},
			want: desired{local: want("b=1")}, keepRemoved: true,
			actions: []string{"restore b"}},
		{name: "a kept file put back changed", have: current{local: local("b=1!")},
			want: desired{local: want("b=2")}, keepRemoved: true,
			actions: []string{"restore b", "rollout b"}},
		{name: "a file changed", have: current{local: local("a=1", "b=1")},
			want:    desired{local: want("a=2", "b=1")},
			actions: []string{"rollout a"}},
		{name: "a file changed to a version that failed before", have: current{local: local("a=1", "b=1")},
			want:    desired{local: want("a=2", "b=2"), bad: set("a")},
			actions: []string{"rollout b", "known-bad a"}},
		{name: "a file pinned, its bytes unchanged", have: current{local: local("a=1")},
			want:    desired{local: want("a=1+pin")},
			actions: []string{"swap a"}},
		{name: "a file pinned and changed", have: current{local: local("a=1")},
			want:    desired{local: want("a=2+pin")},
			actions: []string{"rollout a"}},
		{name: "a file refused now runs on", have: current{local: local("a=1")},
			want: desired{local: want(), refused: set("a")}},
		{name: "a declaration removed", have: current{remotes: remotes("far=1", "near=1")},
			want:    desired{remotes: remotes("near=1")},
			actions: []string{"revoke far"}},
		{name: "a declaration removed, even with keep", have: current{remotes: remotes("far=1")},
			want: desired{}, keepRemoved: true,
			actions: []string{"revoke far"}},
		{name: "a declaration of a new version", have: current{remotes: remotes("far=1")},
			want:    desired{remotes: remotes("far=2")},
			actions: []string{"revoke far", "enroll far"}},
		{name: "a file becomes a declaration", have: current{local: local("x=1")},
			want: desired{remotes: remotes("x=1")}, keepRemoved: true,
			actions: []string{"remove x", "enroll x"}},
		{name: "a declaration becomes a file", have: current{remotes: remotes("x=1")},
			want:    desired{local: want("x=1")},
			actions: []string{"revoke x", "add x"}},
		{name: "everything at once", have: current{local: local("gone=1", "same=1", "new-bytes=1"), remotes: remotes("old=1")},
			want:    desired{local: want("same=1", "new-bytes=2", "fresh=1"), remotes: remotes("young=1")},
			actions: []string{"remove gone", "revoke old", "rollout new-bytes", "add fresh", "enroll young"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, a := range reconcile(c.have, c.want, c.keepRemoved) {
				got = append(got, a.String())
			}
			if !slices.Equal(got, c.actions) {
				t.Errorf("actions %q; want %q", got, c.actions)
			}
		})
	}
}
