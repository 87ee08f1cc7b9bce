package auth

import "errors"

// Errors, each mapped by the api package to etcd's error of the same name.
var (
	ErrRootUserNotExist     = errors.New("auth: root user does not exist")
	ErrRootRoleNotExist     = errors.New("auth: root user does not have root role")
	ErrUserAlreadyExist     = errors.New("auth: user name already exists")
	ErrUserEmpty            = errors.New("auth: user name is empty")
	ErrUserNotFound         = errors.New("auth: user name not found")
	ErrRoleAlreadyExist     = errors.New("auth: role name already exists")
	ErrRoleNotFound         = errors.New("auth: role name not found")
	ErrRoleEmpty            = errors.New("auth: role name is empty")
	ErrAuthFailed           = errors.New("auth: authentication failed, invalid user ID or password")
	ErrPermissionNotGiven   = errors.New("auth: permission not given")
	ErrPermissionDenied     = errors.New("auth: permission denied")
	ErrRoleNotGranted       = errors.New("auth: role is not granted to the user")
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
	ErrAuthNotEnabled       = errors.New("auth: authentication is not enabled")
	ErrInvalidAuthToken     = errors.New("auth: invalid auth token")
	ErrInvalidAuthMgmt      = errors.New("auth: invalid auth management")
	ErrAuthOldRevision      = errors.New("auth: revision of auth store is old")
)

// IsRequestError reports whether err is one of the errors above: a
// request's replicated outcome, not a storage failure.
func IsRequestError(err error) bool {
	for _, e := range []error{ErrRootUserNotExist, ErrRootRoleNotExist, ErrUserAlreadyExist, ErrUserEmpty,
		ErrUserNotFound, ErrRoleAlreadyExist, ErrRoleNotFound, ErrRoleEmpty, ErrAuthFailed, ErrPermissionNotGiven,
		ErrPermissionDenied, ErrRoleNotGranted, ErrPermissionNotGranted, ErrAuthNotEnabled, ErrInvalidAuthToken,
		ErrInvalidAuthMgmt, ErrAuthOldRevision} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
