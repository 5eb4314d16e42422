import crypto from "node:crypto";
import { Op, type Transaction } from "sequelize";
import { badRequest } from "../../lib/errors";
import type { AuthModels } from "./models";
import { hashToken } from "./tokens";

export type Purpose = "email_verification" | "password_reset";

/** How long each kind of token lives: a day to verify an email, half an hour to reset a password. */
export const TOKEN_TTL_S: Record<Purpose, number> = { email_verification: 24 * 3600, password_reset: 30 * 60 };

const WHAT: Record<Purpose, string> = { email_verification: "verification", password_reset: "reset" };

/** A new token (256 random bits, base64url) for a user; only its SHA-256 is stored. */
export async function createActionToken(models: AuthModels, t: Transaction | undefined, userId: string, purpose: Purpose): Promise<string> {
	const token = crypto.randomBytes(32).toString("base64url");
	await models.ActionToken.create(
		{ token_hash: hashToken(token), user_id: userId, purpose, expires_at: new Date(Date.now() + TOKEN_TTL_S[purpose] * 1000) },
		{ transaction: t }
	);
	return token;
}

/** Uses a token once and returns its user id; an unknown, used or expired token is a 400 that says which. */
export async function consumeActionToken(models: AuthModels, token: string, purpose: Purpose): Promise<string> {
	const what = WHAT[purpose];
	const row = await models.ActionToken.findByPk(hashToken(token));
	if (!row || row.get("purpose") !== purpose) throw badRequest(`this ${what} token is unknown`);
	// Only the request that flips `used_at` may use it: two at once cannot both succeed.
	const [flipped] = await models.ActionToken.update(
		{ used_at: new Date() },
		{ where: { token_hash: row.get("token_hash"), used_at: { [Op.is]: null }, expires_at: { [Op.gt]: new Date() } } }
	);
	if (flipped !== 1) {
		await row.reload();
		throw badRequest(row.get("used_at") ? `this ${what} token has already been used` : `this ${what} token has expired; ask for a new one`);
	}
	return row.get("user_id");
}

/** Marks every other unused token of this kind of the user used (after a reset, older links stop working). */
export async function spendAllTokens(models: AuthModels, userId: string, purpose: Purpose): Promise<void> {
	await models.ActionToken.update({ used_at: new Date() }, { where: { user_id: userId, purpose, used_at: { [Op.is]: null } } });
}
