import crypto from "node:crypto";
import { Op, type Transaction } from "sequelize";
import type { AuthModels } from "./models";
import { hashToken, newRefreshToken } from "./tokens";

export interface ClientInfo {
	ip?: string;
	user_agent?: string;
}

const INSERT_SESSION = `INSERT INTO sessions (id, user_id, user_agent, ip, created_at, last_used_at, expires_at)
	VALUES (:id, :user_id, :user_agent, :ip, :now, :now, :expires_at)`;
const INSERT_REFRESH_TOKEN = `INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at, created_at)
	VALUES (:id, :session_id, :token_hash, :expires_at, :now)`;

/**
 * Opens a session and its first refresh token in one transaction. Both are plain INSERTs rather than
 * model creates: every login writes them, and a model instance cost more than the statement.
 */
export async function openSession(
	models: AuthModels,
	t: Transaction,
	userId: string,
	client: ClientInfo,
	refreshTtlSeconds: number
): Promise<{ sid: string; refreshToken: string }> {
	const now = new Date();
	const sid = crypto.randomUUID();
	await models.Session.sequelize!.query(INSERT_SESSION, {
		replacements: {
			id: sid,
			user_id: userId,
			user_agent: client.user_agent?.slice(0, 512) ?? null,
			ip: client.ip?.slice(0, 64) ?? null,
			now,
			expires_at: new Date(now.getTime() + refreshTtlSeconds * 1000)
		},
		transaction: t
	});
	const refreshToken = await issueRefreshToken(models, t, sid, refreshTtlSeconds);
	return { sid, refreshToken };
}

export async function issueRefreshToken(models: AuthModels, t: Transaction, sid: string, ttlSeconds: number): Promise<string> {
	const token = newRefreshToken();
	const now = new Date();
	await models.RefreshToken.sequelize!.query(INSERT_REFRESH_TOKEN, {
		replacements: { id: crypto.randomUUID(), session_id: sid, token_hash: hashToken(token), expires_at: new Date(now.getTime() + ttlSeconds * 1000), now },
		transaction: t
	});
	return token;
}

/** Marks sessions revoked; returns the ids that were live until now. */
export async function revokeSessions(
	models: AuthModels,
	where: { id?: string | string[]; user_id?: string },
	reason: string,
	t?: Transaction
): Promise<string[]> {
	const live = await models.Session.findAll({
		where: { ...where, revoked_at: { [Op.is]: null } },
		attributes: ["id"],
		transaction: t
	});
	if (!live.length) return [];
	const ids = live.map(s => s.get("id") as string);
	await models.Session.update({ revoked_at: new Date(), revoked_reason: reason }, { where: { id: ids, revoked_at: { [Op.is]: null } }, transaction: t });
	return ids;
}

/** A session that can still be used: not revoked, not expired. */
export async function isSessionLive(models: AuthModels, sid: string, userId: string): Promise<boolean> {
	const s = await models.Session.findOne({
		where: { id: sid, user_id: userId, revoked_at: { [Op.is]: null }, expires_at: { [Op.gt]: new Date() } },
		attributes: ["id"]
	});
	return !!s;
}
