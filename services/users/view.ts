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

/** A KYC submission as the admin review queue shows it (the document number is masked). */
export function toKycSubmission(k: KycRow, user: UserView | null) {
	const doc = String(k.document_number ?? "");
	return {
		id: k.id,
		user_id: k.user_id,
		user: user ? { id: user.id, email: user.email, name: user.name, status: user.status } : null,
		full_name: k.full_name,
		date_of_birth: String(k.date_of_birth),
		country: k.country,
		document_type: k.document_type,
		document_number: doc.length > 4 ? `${"*".repeat(doc.length - 4)}${doc.slice(-4)}` : doc,
		status: k.status,
		reason: k.reason ?? null,
		submitted_at: new Date(k.submitted_at).toISOString(),
		decided_at: k.decided_at ? new Date(k.decided_at).toISOString() : null
	};
}
