package ctl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The auth, user and role commands. Unlike etcdctl, whose user and role
// requests have no deadline, each request here is bounded by
// --command-timeout.

func (a *app) authCommand() *cobra.Command {
	ac := &cobra.Command{
		Use:   "auth <enable or disable>",
		Short: "Enables, disables or shows authentication",
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Shows whether authentication is enabled and the auth revision",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return failf(ExitBadArgs, "auth status command does not accept any arguments")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			resp, err := c.AuthStatus(ctx)
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			p, _ := a.printer()
			return p.AuthStatus(resp)
		}),
	}
	enable := &cobra.Command{
		Use:   "enable",
		Short: "Enables authentication (creating the root role if the root user lacks it)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return failf(ExitBadArgs, "auth enable command does not accept any arguments")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			defer cancel()
			// As etcdctl: if the root role is missing, create it, grant it
			// to root and try again.
			for {
				_, err = c.AuthEnable(ctx)
				if err == nil || !errors.Is(err, rpctypes.ErrRootRoleNotExist) {
					break
				}
				if _, err = c.RoleAdd(ctx, rootRoleName); err != nil {
					break
				}
				if _, err = c.UserGrantRole(ctx, "root", rootRoleName); err != nil {
					break
				}
			}
			if err != nil {
				return fail(ExitError, err)
			}
			fmt.Fprintln(a.stdout, "Authentication Enabled")
			return nil
		}),
	}
	disable := &cobra.Command{
		Use:   "disable",
		Short: "Disables authentication",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return failf(ExitBadArgs, "auth disable command does not accept any arguments")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.commandCtx()
			_, err = c.AuthDisable(ctx)
			cancel()
			if err != nil {
				return fail(ExitError, err)
			}
			fmt.Fprintln(a.stdout, "Authentication Disabled")
			return nil
		}),
	}
	ac.AddCommand(enable, disable, status)
	return ac
}

// withClient runs f with a client of the command and its printer.
func (a *app) withClient(cmd *cobra.Command, f func(c *clientv3.Client, p *printer) error) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	p, _ := a.printer()
	return f(c, p)
}

// argsExactly returns a bad-arguments error with msg unless there are n
// arguments.
func argsExactly(args []string, n int, msg string) error {
	if len(args) != n {
		return fail(ExitBadArgs, errors.New(msg))
	}
	return nil
}

func (a *app) userCommand() *cobra.Command {
	uc := &cobra.Command{
		Use:   "user <subcommand>",
		Short: "Adds, deletes, lists and changes users",
	}

	var interactive, noPassword bool
	var newPassword string
	add := &cobra.Command{
		Use:   "add <user name or user:password> [options]",
		Short: "Adds a user (asks for the password unless given)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "user add command requires user name as its argument"); err != nil {
				return err
			}
			user, password := args[0], ""
			opts := &clientv3.UserAddOptions{NoPassword: noPassword}
			if !noPassword {
				switch name, pw, ok := strings.Cut(args[0], ":"); {
				case newPassword != "":
					password = newPassword
				case ok:
					if name == "" {
						return failf(ExitBadArgs, "empty user name is not allowed")
					}
					user, password = name, pw
				default:
					var err error
					if password, err = a.newPassword(args[0], interactive); err != nil {
						return err
					}
				}
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserAddWithOptions(ctx, user, password, opts)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserAdd(user, resp)
			})
		}),
	}
	add.Flags().BoolVar(&interactive, "interactive", true, "ask for the password on the terminal; false: read it from stdin")
	add.Flags().StringVar(&newPassword, "new-user-password", "", "the new user's password")
	add.Flags().BoolVar(&noPassword, "no-password", false, "create the user without a password (for client-certificate authentication only)")

	del := &cobra.Command{
		Use:   "delete <user name>",
		Short: "Deletes a user",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "user delete command requires user name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserDelete(ctx, args[0])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserDelete(args[0], resp)
			})
		}),
	}

	var detail bool
	get := &cobra.Command{
		Use:   "get <user name> [options]",
		Short: "Shows a user's roles (with --detail, their permissions)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "user get command requires user name as its argument"); err != nil {
				return err
			}
			name := args[0]
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				defer cancel()
				resp, err := c.UserGet(ctx, name)
				if err != nil {
					return fail(ExitError, err)
				}
				if !detail {
					return p.UserGet(name, resp)
				}
				fmt.Fprintf(a.stdout, "User: %s\n", name)
				for _, role := range resp.Roles {
					fmt.Fprintln(a.stdout)
					rr, err := c.RoleGet(ctx, role)
					if err != nil {
						return fail(ExitError, err)
					}
					if err := p.RoleGet(role, rr); err != nil {
						return err
					}
				}
				return nil
			})
		}),
	}
	get.Flags().BoolVar(&detail, "detail", false, "also show the permissions of the user's roles")

	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all users",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 0, "user list command requires no arguments"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserList(ctx)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserList(resp)
			})
		}),
	}

	var passwdInteractive bool
	passwd := &cobra.Command{
		Use:   "passwd <user name> [options]",
		Short: "Changes a user's password (asks for it)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "user passwd command requires user name as its argument"); err != nil {
				return err
			}
			password, err := a.newPassword(args[0], passwdInteractive)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserChangePassword(ctx, args[0], password)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserChangePassword(resp)
			})
		}),
	}
	passwd.Flags().BoolVar(&passwdInteractive, "interactive", true, "ask for the password on the terminal; false: read it from stdin")

	grant := &cobra.Command{
		Use:   "grant-role <user name> <role name>",
		Short: "Grants a role to a user",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 2, "user grant command requires user name and role name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserGrantRole(ctx, args[0], args[1])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserGrantRole(args[0], args[1], resp)
			})
		}),
	}
	revoke := &cobra.Command{
		Use:   "revoke-role <user name> <role name>",
		Short: "Revokes a role from a user",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 2, "user revoke-role requires user name and role name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.UserRevokeRole(ctx, args[0], args[1])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.UserRevokeRole(args[0], args[1], resp)
			})
		}),
	}
	uc.AddCommand(add, del, get, list, passwd, grant, revoke)
	return uc
}

// newPassword reads the password for user: twice from the terminal
// (prompting on stdout, as etcdctl), or, with interactive false, as one
// whitespace-separated word from stdin.
func (a *app) newPassword(user string, interactive bool) (string, error) {
	if !interactive {
		var pw string
		_, _ = fmt.Fscanf(a.stdin, "%s", &pw)
		return pw, nil
	}
	pw, err := askPassword(a.stdin, a.stdout, fmt.Sprintf("Password of %s: ", user))
	if err != nil {
		return "", failf(ExitBadArgs, "failed to ask password: %w", err)
	}
	if pw == "" {
		return "", failf(ExitBadArgs, "empty password")
	}
	again, err := askPassword(a.stdin, a.stdout, fmt.Sprintf("Type password of %s again for confirmation: ", user))
	if err != nil {
		return "", failf(ExitBadArgs, "failed to ask password: %w", err)
	}
	if pw != again {
		return "", failf(ExitBadArgs, "given passwords are different")
	}
	return pw, nil
}

func (a *app) roleCommand() *cobra.Command {
	rc := &cobra.Command{
		Use:   "role <subcommand>",
		Short: "Adds, deletes, lists roles and changes their permissions",
	}
	add := &cobra.Command{
		Use:   "add <role name>",
		Short: "Adds a role",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "role add command requires role name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleAdd(ctx, args[0])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.RoleAdd(args[0], resp)
			})
		}),
	}
	del := &cobra.Command{
		Use:   "delete <role name>",
		Short: "Deletes a role",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "role delete command requires role name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleDelete(ctx, args[0])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.RoleDelete(args[0], resp)
			})
		}),
	}
	get := &cobra.Command{
		Use:   "get <role name>",
		Short: "Shows a role's permissions",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 1, "role get command requires role name as its argument"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleGet(ctx, args[0])
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.RoleGet(args[0], resp)
			})
		}),
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists all roles",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := argsExactly(args, 0, "role list command requires no arguments"); err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleList(ctx)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.RoleList(resp)
			})
		}),
	}

	var grantPrefix, grantFromKey bool
	grant := &cobra.Command{
		Use:   "grant-permission [options] <role name> <permission type> <key> [endkey]",
		Short: "Grants read, write or readwrite on a key, range, prefix (--prefix) or keys from a key on (--from-key)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) < 3 {
				return failf(ExitBadArgs, "role grant command requires role name, permission type, and key [endkey] as its argument")
			}
			perm, err := clientv3.StrToPermissionType(args[1])
			if err != nil {
				return fail(ExitBadArgs, err)
			}
			key, end, err := permRange(args[2:], grantPrefix, grantFromKey)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleGrantPermission(ctx, args[0], key, end, perm)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				return p.RoleGrantPermission(args[0], resp)
			})
		}),
	}
	grant.Flags().BoolVar(&grantPrefix, "prefix", false, "grant the permission on every key with the given prefix")
	grant.Flags().BoolVar(&grantFromKey, "from-key", false, "grant the permission on every key greater than or equal to the given one (byte order)")

	var revokePrefix, revokeFromKey bool
	revoke := &cobra.Command{
		Use:   "revoke-permission <role name> <key> [endkey]",
		Short: "Revokes the permission on a key, range, prefix (--prefix) or keys from a key on (--from-key)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return failf(ExitBadArgs, "role revoke-permission command requires role name and key [endkey] as its argument")
			}
			key, end, err := permRange(args[1:], revokePrefix, revokeFromKey)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(c *clientv3.Client, p *printer) error {
				ctx, cancel := a.commandCtx()
				resp, err := c.RoleRevokePermission(ctx, args[0], key, end)
				cancel()
				if err != nil {
					return fail(ExitError, err)
				}
				// The key as given: an empty key is "\x00" in the request.
				return p.RoleRevokePermission(args[0], args[1], end, resp)
			})
		}),
	}
	revoke.Flags().BoolVar(&revokePrefix, "prefix", false, "revoke a permission on a prefix")
	revoke.Flags().BoolVar(&revokeFromKey, "from-key", false, "revoke a permission on every key from the given one on")

	rc.AddCommand(add, del, get, list, grant, revoke)
	return rc
}

// permRange turns the key arguments of grant-permission and
// revoke-permission (key [endkey]) and the --prefix/--from-key flags into
// the key and range end of a permission, as etcdctl does: an empty key is
// "\x00" (with --prefix or --from-key: every key), --from-key's range end
// is "\x00", and an end key excludes both flags.
func permRange(args []string, prefix, fromKey bool) (key, end string, err error) {
	key = args[0]
	if key == "" {
		if prefix && fromKey {
			return "", "", failf(ExitBadArgs, "--from-key and --prefix flags are mutually exclusive")
		}
		if prefix || fromKey {
			end = "\x00"
		}
		return "\x00", end, nil
	}
	if len(args) == 1 {
		switch {
		case prefix && fromKey:
			return "", "", failf(ExitBadArgs, "--from-key and --prefix flags are mutually exclusive")
		case prefix:
			return key, clientv3.GetPrefixRangeEnd(key), nil
		case fromKey:
			return key, "\x00", nil
		}
		return key, "", nil
	}
	if prefix {
		return "", "", failf(ExitBadArgs, "unexpected endkey argument with --prefix flag")
	}
	if fromKey {
		return "", "", failf(ExitBadArgs, "unexpected endkey argument with --from-key flag")
	}
	return key, args[1], nil
}
