// Package auth is Kvorum's access control: users with bcrypt-hashed
// passwords, roles with read/write permissions on keys, key ranges and
// prefixes, the root user and role, and the tokens clients authenticate
// with — etcd's model and errors.
//
// The Store is replicated state: it changes only by applying committed auth
// requests (Store.Apply), entry by entry, so every member holds the same
// users, roles and auth revision at the same applied index. Every change
// increments the revision; a request admitted under an older revision is
// refused at apply time (ErrAuthOldRevision), so a permission revoked
// takes effect at once, even for requests already on their way. Passwords
// are hashed before they are proposed, so applying stays deterministic and
// cheap. Records are stored under storage.Auth*Key; this package alone
// reads and writes them.
//
// Tokens are not replicated state: simple tokens are registered on every
// member as the Authenticate entry that created them is applied; JWT
// tokens are verified with the configured key.
package auth
