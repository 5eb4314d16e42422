import type { Model } from "sequelize";
import type { KycRow, UserRow } from "./models";

/** The public shape of a user: never a password or its hash (users_db holds none). */
export interface UserView {
	id: string;
	email: string;
	name: string;
	phone: string | null;
	status: UserRow["status"];
	roles: UserRow["roles"];
	email_verified: boolean;
	kyc_status: UserRow["kyc_status"];
	created_at: string;
	updated_at: string;
}

export function toUser(m: Model<UserRow, any>): UserView {
	const u = m.get({ plain: true }) as UserRow;
	return {
		id: u.id,
		email: u.email,
		name: u.name,
		phone: u.phone ?? null,
		status: u.status,
		roles: m.get("roles") as UserRow["roles"],
		email_verified: !!u.email_verified,
		kyc_status: u.kyc_status,
		created_at: new Date(u.created_at).toISOString(),
		updated_at: new Date(u.updated_at).toISOString()
	};
}

export function toKycStatus(kyc_status: UserRow["kyc_status"], k: KycRow | null) {
	return {
		kyc_status,
		submitted_at: k ? new Date(k.submitted_at).toISOString() : null,
		decided_at: k?.decided_at ? new Date(k.decided_at).toISOString() : null,
		reason: k?.reason ?? null
	};
}
