import type { Logger } from "moleculer";
import { requireUser } from "./access";
import { forbidden } from "./errors";
import type { AppContext, AuthUser } from "./types";

export const ROLE_NAMES = ["user", "support", "admin"] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

/**
 * The one permission map of the admin surface: what each role may do. `admin` may do everything;
 * `support` reads users, payments, KYC and the system view, and decides KYC; `user` may do none of it.
 */
export const PERMISSIONS = {
	"admin.access": ["support", "admin"],
	"users.read": ["support", "admin"],
	"users.suspend": ["admin"],
	"users.roles": ["admin"],
	"kyc.read": ["support", "admin"],
	"kyc.decide": ["support", "admin"],
	"payments.read": ["support", "admin"],
	"payments.refund": ["admin"],
	"audit.read": ["admin"],
	"system.read": ["support", "admin"],
	"stats.read": ["support", "admin"],
	"jobs.read": ["support", "admin"],
	"jobs.run": ["admin"],
	"dead-letters.read": ["support", "admin"],
	"dead-letters.redrive": ["admin"]
} as const satisfies Record<string, readonly RoleName[]>;

export type Permission = keyof typeof PERMISSIONS;

/** Whether a caller with these roles holds the permission. */
export function can(roles: readonly string[], permission: Permission): boolean {
	return (PERMISSIONS[permission] as readonly string[]).some(r => roles.includes(r));
}

/** Every permission the roles hold (the panel shows only what the role may do). */
export function permissionsOf(roles: readonly string[]): Permission[] {
	return (Object.keys(PERMISSIONS) as Permission[]).filter(p => can(roles, p));
}

/**
 * The caller, if it holds `permission`; else 403, and the denial is logged as a security event
 * (warn) naming the actor, the permission, the request id and the client IP. No caller → 401.
 */
export function requirePermission(logger: Logger, ctx: AppContext<any>, permission: Permission): AuthUser {
	const user = requireUser(ctx);
	if (can(user.roles, permission)) return user;
	const event = {
		event: "permission_denied",
		actor_id: user.id,
		roles: user.roles,
		permission,
		action: ctx.action?.name ?? null,
		request_id: ctx.requestID ?? null,
		ip: ctx.meta.client?.ip ?? null
	};
	logger.warn(`security: permission denied ${JSON.stringify(event)}`);
	throw forbidden(`the ${permission} permission is required (role ${PERMISSIONS[permission].join(" or ")})`);
}
