package snapshot

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/kvorum/kvorum/internal/auth"
	"github.com/kvorum/kvorum/internal/storage"
)

// authState is a closed cluster's auth state: root, a user with a role
// on a prefix, a user without a password (certificate only).
func authState(t *testing.T) auth.Records {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("alicepw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	rootHash, err := bcrypt.GenerateFromPassword([]byte("rootpw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Records{
		Enabled:  true,
		Revision: 7,
		Users: []*authpb.User{
			{Name: []byte("alice"), Password: hash, Roles: []string{"app"}},
			{Name: []byte("cert-only"), Options: &authpb.UserAddOptions{NoPassword: true}},
			{Name: []byte("root"), Password: rootHash, Roles: []string{"root"}},
		},
		Roles: []*authpb.Role{
			{Name: []byte("app"), KeyPermission: []*authpb.Permission{{PermType: authpb.Permission_READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")}}},
			{Name: []byte("root")},
		},
	}
}

func sameRecords(t *testing.T, what string, got, want auth.Records) {
	t.Helper()
	if got.Enabled != want.Enabled || got.Revision != want.Revision || len(got.Users) != len(want.Users) || len(got.Roles) != len(want.Roles) {
		t.Fatalf("%s: enabled %v revision %d, %d users, %d roles; want %v, %d, %d, %d",
			what, got.Enabled, got.Revision, len(got.Users), len(got.Roles), want.Enabled, want.Revision, len(want.Users), len(want.Roles))
	}
	for i := range want.Users {
		if !proto.Equal(got.Users[i], want.Users[i]) {
			t.Errorf("%s: user %d is %v, want %v", what, i, got.Users[i], want.Users[i])
		}
	}
	for i := range want.Roles {
		if !proto.Equal(got.Roles[i], want.Roles[i]) {
			t.Errorf("%s: role %d is %v, want %v", what, i, got.Roles[i], want.Roles[i])
		}
	}
}

// withChecksum appends the sha256 a snapshot ends with.
func withChecksum(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := os.WriteFile(path, append(data, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// restoredAuth restores the snapshot at path and loads the auth state the
// new data dir holds, and checks the password of alice.
func restoredAuth(t *testing.T, path string) auth.Records {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(restoreConfig(path, dir))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var st auth.Store
	if err := st.Load(eng.DB); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckPassword("alice", "alicepw"); err != nil {
		t.Errorf("alice's password after the restore: %v", err)
	}
	sameRecords(t, "restore result", res.Auth, st.Records())
	return st.Records()
}

// A Kvorum backup carries the auth state in etcd's auth buckets, as etcd's
// own readers see them, and a restore brings it back: the restored cluster
// is as closed as the one backed up.
func TestBackupCarriesTheAuthState(t *testing.T) {
	want := authState(t)
	eng := loadedEngine(t)
	b := eng.DB.NewBatch()
	if err := auth.WriteRecords(b, want); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "db")
	snap := eng.DB.NewSnapshot()
	defer snap.Close()
	if err := Build(path, snap, BuildOptions{Term: 3}); err != nil {
		t.Fatal(err)
	}

	be := backend.NewDefaultBackend(zap.NewNop(), path)
	// etcd's auth store reads its buckets through a batch transaction.
	tx := schema.NewAuthBackend(zap.NewNop(), be).BatchTx()
	tx.Lock()
	etcds := auth.Records{Enabled: tx.UnsafeReadAuthEnabled(), Revision: tx.UnsafeReadAuthRevision(),
		Users: tx.UnsafeGetAllUsers(), Roles: tx.UnsafeGetAllRoles()}
	tx.Unlock()
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "etcd's readers", etcds, want)

	withChecksum(t, path)
	sameRecords(t, "restored", restoredAuth(t, path), want)
}

// An etcd backup of a closed cluster restores closed, with etcd's users
// and roles.
func TestRestoresEtcdsAuthState(t *testing.T) {
	want := authState(t)
	path := filepath.Join(t.TempDir(), "etcd.db")
	be := backend.NewDefaultBackend(zap.NewNop(), path)
	tx := be.BatchTx()
	tx.LockOutsideApply()
	for _, b := range schema.AllBuckets {
		tx.UnsafeCreateBucket(b)
	}
	tx.Unlock()
	atx := schema.NewAuthBackend(zap.NewNop(), be).BatchTx()
	atx.Lock()
	for _, u := range want.Users {
		atx.UnsafePutUser(u)
	}
	for _, r := range want.Roles {
		atx.UnsafePutRole(r)
	}
	atx.UnsafeSaveAuthEnabled(true)
	atx.UnsafeSaveAuthRevision(want.Revision)
	atx.Unlock()
	be.ForceCommit()
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	withChecksum(t, path)
	sameRecords(t, "restored", restoredAuth(t, path), want)
}

// A file with auth on but no root user holding the root role (etcd never
// writes one) is refused: it would restore a cluster nobody administers.
func TestRestoreRefusesAuthWithoutRoot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd.db")
	be := backend.NewDefaultBackend(zap.NewNop(), path)
	tx := be.BatchTx()
	tx.LockOutsideApply()
	for _, b := range schema.AllBuckets {
		tx.UnsafeCreateBucket(b)
	}
	tx.Unlock()
	atx := schema.NewAuthBackend(zap.NewNop(), be).BatchTx()
	atx.Lock()
	atx.UnsafePutUser(&authpb.User{Name: []byte("root")}) // no root role
	atx.UnsafeSaveAuthEnabled(true)
	atx.Unlock()
	be.ForceCommit()
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	withChecksum(t, path)
	if _, err := Restore(restoreConfig(path, filepath.Join(t.TempDir(), "restored"))); err == nil || !strings.Contains(err.Error(), "no root user holds the root role") {
		t.Fatalf("restore: %v, want the refusal naming the missing root", err)
	}
}
