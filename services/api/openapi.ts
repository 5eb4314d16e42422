// The OpenAPI 3.1 document of every public route the gateway serves (contract: /work/shared/API.md).
// Request schemas mirror the `params` of the actions behind each route; keep them in step.

import { CURRENCIES } from "../payments/currencies";

/** A JSON Schema 2020-12 object, as OpenAPI 3.1 uses it. */
export interface SchemaObject {
	$ref?: string;
	type?: string | string[];
	format?: string;
	const?: unknown;
	enum?: unknown[];
	pattern?: string;
	minLength?: number;
	maxLength?: number;
	minimum?: number;
	maximum?: number;
	minItems?: number;
	uniqueItems?: boolean;
	items?: SchemaObject;
	properties?: Record<string, SchemaObject>;
	required?: string[];
	additionalProperties?: boolean | SchemaObject;
	allOf?: SchemaObject[];
	description?: string;
	examples?: unknown[];
}

export interface Reference {
	$ref: string;
}

export interface HeaderObject {
	description?: string;
	required?: boolean;
	schema: SchemaObject;
}

export interface MediaTypeObject {
	schema: SchemaObject;
}

export interface ResponseObject {
	description: string;
	headers?: Record<string, HeaderObject | Reference>;
	content?: Record<string, MediaTypeObject>;
}

export interface ParameterObject {
	name: string;
	in: "path" | "query" | "header" | "cookie";
	description?: string;
	required?: boolean;
	schema: SchemaObject;
}

export interface RequestBodyObject {
	description?: string;
	required?: boolean;
	content: Record<string, MediaTypeObject>;
}

export interface OperationObject {
	operationId: string;
	summary: string;
	description?: string;
	tags: string[];
	security?: Record<string, string[]>[];
	parameters?: (ParameterObject | Reference)[];
	requestBody?: RequestBodyObject;
	responses: Record<string, ResponseObject | Reference>;
}

export type HttpMethod = "get" | "put" | "post" | "delete" | "patch";
export type PathItemObject = Partial<Record<HttpMethod, OperationObject>>;

export interface OpenApiDocument {
	openapi: "3.1.0";
	info: { title: string; version: string; description?: string };
	servers: { url: string; description?: string }[];
	tags: { name: string; description?: string }[];
	security: Record<string, string[]>[];
	paths: Record<string, PathItemObject>;
	components: {
		schemas: Record<string, SchemaObject>;
		responses: Record<string, ResponseObject>;
		parameters: Record<string, ParameterObject>;
		headers: Record<string, HeaderObject>;
		securitySchemes: Record<string, { type: "http"; scheme: string; bearerFormat?: string; description?: string }>;
	};
}

const schema = (name: string): Reference => ({ $ref: `#/components/schemas/${name}` });

/** A page of items, as every list route answers (API.md: `?limit=&offset=`). */
const listOf = (items: SchemaObject): SchemaObject => ({
	type: "object",
	additionalProperties: false,
	required: ["items", "total", "limit", "offset"],
	properties: {
		items,
		total: { type: "integer", minimum: 0 },
		limit: { type: "integer", minimum: 1, maximum: 100 },
		offset: { type: "integer", minimum: 0 }
	}
});
const header = (name: string): Reference => ({ $ref: `#/components/headers/${name}` });
const response = (name: string): Reference => ({ $ref: `#/components/responses/${name}` });

const E164 = "^\\+[1-9][0-9]{6,14}$";
const dateTime: SchemaObject = { type: "string", format: "date-time" };
const nullableDateTime: SchemaObject = { type: ["string", "null"], format: "date-time" };

const schemas: Record<string, SchemaObject> = {
	User: {
		type: "object",
		description: "A user's public profile; never a password or its hash.",
		additionalProperties: false,
		required: ["id", "email", "name", "phone", "status", "roles", "email_verified", "kyc_status", "created_at", "updated_at"],
		properties: {
			id: { type: "string", format: "uuid" },
			email: { type: "string", format: "email", maxLength: 320, description: "Stored lowercased." },
			name: { type: "string", minLength: 1, maxLength: 100 },
			phone: { type: ["string", "null"], pattern: E164, description: "E.164, or null." },
			status: { type: "string", enum: ["active", "suspended"] },
			roles: { type: "array", minItems: 1, uniqueItems: true, items: { type: "string", enum: ["user", "support", "admin"] } },
			email_verified: { type: "boolean" },
			kyc_status: { type: "string", enum: ["none", "pending", "verified", "rejected"] },
			created_at: dateTime,
			updated_at: dateTime
		}
	},
	RegisterRequest: {
		type: "object",
		additionalProperties: false,
		description: "`roles`, `status`, `id`, `email_verified`, `kyc_status` or any other field is refused with 422.",
		required: ["email", "password", "name"],
		properties: {
			email: { type: "string", format: "email", maxLength: 320, description: "Case-insensitive; stored lowercased. Unique (409 if taken)." },
			password: {
				type: "string",
				minLength: 2,
				maxLength: 72,
				description: "8 to 72 bytes once UTF-8 encoded (checked in bytes: 422 otherwise); stored with bcrypt."
			},
			name: { type: "string", minLength: 1, maxLength: 100, pattern: "\\S", description: "Surrounding whitespace is trimmed; must not be blank." },
			phone: { type: "string", pattern: E164, description: "E.164, e.g. +14155550123." }
		},
		examples: [{ email: "ada@example.com", password: "correct horse battery", name: "Ada Lovelace", phone: "+14155550123" }]
	},
	LoginRequest: {
		type: "object",
		additionalProperties: false,
		required: ["email", "password"],
		properties: {
			email: { type: "string", maxLength: 320, description: "Case-insensitive." },
			password: { type: "string", maxLength: 1024 }
		}
	},
	RefreshRequest: {
		type: "object",
		additionalProperties: false,
		required: ["refresh_token"],
		properties: { refresh_token: { type: "string", minLength: 1, maxLength: 512, description: "Single use: refreshing rotates it." } }
	},
	LogoutRequest: {
		type: "object",
		additionalProperties: false,
		properties: {
			refresh_token: { type: "string", minLength: 1, maxLength: 512, description: "Also ends the session of this refresh token, when it is the caller's." }
		}
	},
	ForgotPasswordRequest: {
		type: "object",
		additionalProperties: false,
		required: ["email"],
		properties: { email: { type: "string", maxLength: 320, description: "Case-insensitive. The answer is 202 whether or not an account has it." } }
	},
	ResetPasswordRequest: {
		type: "object",
		additionalProperties: false,
		required: ["token", "password"],
		properties: {
			token: { type: "string", minLength: 1, maxLength: 256, description: "The `token` query parameter of the reset email's link (single use, 30 minutes)." },
			password: { type: "string", minLength: 2, maxLength: 72, description: "The new password: 8 to 72 bytes once UTF-8 encoded (422 otherwise)." }
		}
	},
	VerifyEmailRequest: {
		type: "object",
		additionalProperties: false,
		required: ["token"],
		properties: {
			token: { type: "string", minLength: 1, maxLength: 256, description: "The `token` query parameter of the verification email's link (single use, 24 hours)." }
		}
	},
	Session: {
		type: "object",
		additionalProperties: false,
		required: ["id", "user_agent", "ip", "created_at", "last_used_at", "current"],
		properties: {
			id: { type: "string", format: "uuid", description: "The `sid` claim of the session's access tokens." },
			user_agent: { type: ["string", "null"], maxLength: 512 },
			ip: { type: ["string", "null"], maxLength: 64, description: "The client address at login." },
			created_at: dateTime,
			last_used_at: { ...dateTime, description: "Login or the last refresh." },
			current: { type: "boolean", description: "true for the session of the token making this request." }
		}
	},
	SessionList: listOf({ type: "array", items: schema("Session"), description: "The caller's live sessions, most recently used first." }),
	UpdateMeRequest: {
		type: "object",
		additionalProperties: false,
		description: "`email`, `roles`, `status` or any other field is refused with 422.",
		properties: {
			name: { type: "string", minLength: 1, maxLength: 100, pattern: "\\S", description: "Surrounding whitespace is trimmed; must not be blank." },
			phone: { type: ["string", "null"], pattern: E164, description: "E.164; null removes it." }
		}
	},
	TokenPair: {
		type: "object",
		additionalProperties: false,
		required: ["access_token", "token_type", "expires_in", "refresh_token", "user_id"],
		properties: {
			access_token: { type: "string", description: "A JWT (ES256 or RS256, with `kid`); claims iss, aud, sub, iat, exp, jti, sid, roles." },
			token_type: { type: "string", const: "Bearer" },
			expires_in: { type: "integer", minimum: 1, maximum: 900, description: "Seconds until the access token expires." },
			refresh_token: { type: "string", minLength: 1, maxLength: 512, description: "Opaque, single use." },
			user_id: { type: "string", format: "uuid" }
		}
	},
	KycSubmission: {
		type: "object",
		additionalProperties: false,
		required: ["full_name", "date_of_birth", "country", "document_type", "document_number"],
		properties: {
			full_name: { type: "string", minLength: 1, maxLength: 200, pattern: "\\S", description: "Surrounding whitespace is trimmed; must not be blank." },
			date_of_birth: {
				type: "string",
				pattern: "^\\d{4}-\\d{2}-\\d{2}$",
				description: "YYYY-MM-DD; a real date, not before 1900, of a person at least 18 years old (422 otherwise)."
			},
			country: { type: "string", pattern: "^[A-Za-z]{2}$", description: "ISO 3166-1 alpha-2 code; stored uppercased." },
			document_type: { type: "string", enum: ["passport", "national_id", "driving_license"] },
			document_number: { type: "string", pattern: "^[A-Za-z0-9 -]{4,64}$", description: "4 to 64 letters, digits, spaces or dashes (after trimming)." }
		}
	},
	KycAccepted: {
		type: "object",
		additionalProperties: false,
		required: ["kyc_status"],
		properties: { kyc_status: { type: "string", const: "pending" } }
	},
	KycStatus: {
		type: "object",
		additionalProperties: false,
		required: ["kyc_status", "submitted_at", "decided_at", "reason"],
		properties: {
			kyc_status: { type: "string", enum: ["none", "pending", "verified", "rejected"] },
			submitted_at: nullableDateTime,
			decided_at: nullableDateTime,
			reason: { type: ["string", "null"] }
		}
	},
	Jwk: {
		type: "object",
		additionalProperties: false,
		description: "A public signing key (RFC 7517); never private members.",
		required: ["kty", "kid", "alg", "use"],
		properties: {
			kty: { type: "string", enum: ["EC", "RSA", "OKP"] },
			kid: { type: "string", minLength: 1 },
			alg: { type: "string", enum: ["ES256", "RS256", "EdDSA"] },
			use: { type: "string", const: "sig" },
			crv: { type: "string" },
			x: { type: "string" },
			y: { type: "string" },
			n: { type: "string" },
			e: { type: "string" }
		}
	},
	Jwks: {
		type: "object",
		additionalProperties: false,
		required: ["keys"],
		properties: { keys: { type: "array", minItems: 1, items: schema("Jwk") } }
	},
	Health: {
		type: "object",
		additionalProperties: false,
		required: ["status"],
		properties: { status: { type: "string", const: "ok" } }
	},
	Readiness: {
		type: "object",
		additionalProperties: false,
		required: ["status", "checks"],
		properties: {
			status: { type: "string", enum: ["ok", "unavailable"] },
			checks: {
				type: "object",
				description: "One entry per service the API needs (e.g. auth, users).",
				additionalProperties: { type: "string", enum: ["ok", "down"] }
			}
		}
	},
	Payment: {
		type: "object",
		description: "A charge. `amount` and `amount_refunded` are integers in the currency's minor unit (1999 usd is $19.99).",
		additionalProperties: false,
		required: [
			"id",
			"user_id",
			"amount",
			"currency",
			"description",
			"status",
			"provider",
			"provider_payment_id",
			"amount_refunded",
			"failure_reason",
			"receipt_number",
			"created_at",
			"updated_at"
		],
		properties: {
			id: { type: "string", format: "uuid" },
			user_id: { type: "string", format: "uuid" },
			amount: { type: "integer", minimum: 1, maximum: 99999999 },
			currency: { type: "string", enum: CURRENCIES, description: "Lowercase ISO 4217." },
			description: { type: ["string", "null"], maxLength: 500 },
			status: { type: "string", enum: ["processing", "succeeded", "failed", "refunded", "partially_refunded"] },
			provider: { type: "string", enum: ["simulated", "stripe"] },
			provider_payment_id: { type: ["string", "null"], description: "The provider's PaymentIntent id (the `payment_intent` Stripe's charge events name)." },
			amount_refunded: { type: "integer", minimum: 0, maximum: 99999999 },
			failure_reason: { type: ["string", "null"], description: "Why the card was declined, e.g. `card_declined`, `insufficient_funds`, `authentication_required`." },
			receipt_number: { type: ["string", "null"], pattern: "^R-\\d{4}-\\d{6,}$", description: "Given when the payment succeeds: unique, sequential per year." },
			created_at: dateTime,
			updated_at: dateTime
		}
	},
	ChargeRequest: {
		type: "object",
		additionalProperties: false,
		description: "Any other field is refused with 422. Sent with an `Idempotency-Key` header.",
		required: ["amount", "currency", "payment_method"],
		properties: {
			amount: { type: "integer", minimum: 1, maximum: 99999999, description: "In the currency's minor unit; a JSON integer (not a string or a float)." },
			currency: { type: "string", enum: CURRENCIES, description: "Lowercase ISO 4217." },
			payment_method: {
				type: "string",
				minLength: 1,
				maxLength: 255,
				description: "A payment method id; Stripe's test values work, e.g. `pm_card_visa` (succeeds), `pm_card_chargeDeclined`, `pm_card_authenticationRequired` (declined). An unknown one is 422."
			},
			description: { type: "string", maxLength: 500 },
			user_id: { type: "string", format: "uuid", description: "When present, must be the caller (403 otherwise)." }
		},
		examples: [{ amount: 1999, currency: "usd", payment_method: "pm_card_visa", description: "Order #1001" }]
	},
	PaymentList: listOf({ type: "array", items: schema("Payment"), description: "Newest first." }),
	Receipt: {
		type: "object",
		additionalProperties: false,
		required: ["receipt_number", "payment_id", "amount", "currency", "issued_at", "customer", "description"],
		properties: {
			receipt_number: { type: "string", pattern: "^R-\\d{4}-\\d{6,}$", examples: ["R-2026-000042"] },
			payment_id: { type: "string", format: "uuid" },
			amount: { type: "integer", minimum: 1 },
			currency: { type: "string", enum: CURRENCIES },
			issued_at: dateTime,
			customer: {
				type: "object",
				additionalProperties: false,
				required: ["name", "email"],
				properties: { name: { type: ["string", "null"] }, email: { type: ["string", "null"], format: "email" } }
			},
			description: { type: ["string", "null"] }
		}
	},
	PaymentDeclined: {
		type: "object",
		description: "A problem for a declined card; the payment is stored as `failed`.",
		allOf: [schema("Problem")],
		required: ["payment_id", "failure_reason"],
		properties: {
			status: { type: "integer", const: 402 },
			payment_id: { type: "string", format: "uuid" },
			failure_reason: { type: "string" }
		}
	},
	StripeEvent: {
		type: "object",
		additionalProperties: false,
		description: "A Stripe event, as Stripe sends it (https://docs.stripe.com/api/events/object).",
		required: ["id", "type", "data"],
		properties: {
			id: { type: "string" },
			object: { type: "string", const: "event" },
			account: { type: "string" },
			api_version: { type: ["string", "null"] },
			context: { type: "string" },
			created: { type: "integer" },
			data: { type: "object", required: ["object"], properties: { object: { type: "object" }, previous_attributes: { type: "object" } } },
			livemode: { type: "boolean" },
			pending_webhooks: { type: "integer" },
			request: { type: ["object", "null"] },
			type: { type: "string", examples: ["payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"] }
		}
	},
	WebhookReceived: {
		type: "object",
		additionalProperties: false,
		required: ["received"],
		properties: { received: { type: "boolean", const: true } }
	},
	Notification: {
		type: "object",
		description: "One message sent (or being sent) to the caller: an email or an SMS.",
		additionalProperties: false,
		required: ["id", "channel", "template", "to", "status", "attempts", "request_id", "created_at", "sent_at"],
		properties: {
			id: { type: "string", format: "uuid" },
			channel: { type: "string", enum: ["email", "sms"] },
			template: { type: "string", description: "e.g. welcome, receipt, payment_failed, refund." },
			to: { type: "string", description: "The email address or E.164 phone number it goes to." },
			status: {
				type: "string",
				enum: ["queued", "sent", "failed", "dead"],
				description: "`failed` is retried with backoff; `dead` after the last attempt."
			},
			attempts: { type: "integer", minimum: 0 },
			request_id: { type: ["string", "null"], description: "The id of the request that caused it." },
			created_at: dateTime,
			sent_at: nullableDateTime
		}
	},
	NotificationList: listOf({ type: "array", items: schema("Notification"), description: "Newest first." }),
	JobsOverview: {
		type: "object",
		additionalProperties: false,
		required: ["schedules", "queues"],
		properties: {
			schedules: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["name", "cron", "timezone", "overlap", "description", "last_run_at", "last_status", "next_run_at"],
					properties: {
						name: { type: "string" },
						cron: { type: "string", examples: ["*/5 * * * *"] },
						timezone: { type: "string", examples: ["UTC"] },
						overlap: { type: "string", enum: ["skip", "queue"] },
						description: { type: "string" },
						last_run_at: nullableDateTime,
						last_status: { type: ["string", "null"], enum: ["running", "succeeded", "failed", null] },
						next_run_at: nullableDateTime
					}
				}
			},
			queues: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["name", "pending", "dead"],
					properties: { name: { type: "string" }, pending: { type: "integer", minimum: 0 }, dead: { type: "integer", minimum: 0 } }
				}
			}
		}
	},
	JobRunAccepted: {
		type: "object",
		additionalProperties: false,
		required: ["run_id", "job", "slot", "status", "created"],
		properties: {
			run_id: { type: "string", format: "uuid" },
			job: { type: "string" },
			slot: { type: "string", description: "`manual:<minute>`: presses within the same minute are one run.", examples: ["manual:2026-01-01T09:30"] },
			status: { type: "string", enum: ["queued", "running", "succeeded", "failed", "skipped"] },
			created: { type: "boolean", description: "False when this press joined a run already asked for." }
		}
	},
	DeadLetter: {
		type: "object",
		additionalProperties: false,
		required: ["id", "queue", "message_id", "error", "request_id", "failed_at", "payload"],
		properties: {
			id: { type: "string", format: "uuid" },
			queue: { type: "string", examples: ["notifications.deliveries"] },
			message_id: { type: ["string", "null"] },
			error: { type: ["string", "null"] },
			request_id: { type: ["string", "null"] },
			failed_at: dateTime,
			payload: { description: "The parked message (JSON, or text when it was not JSON)." }
		}
	},
	DeadLetterList: listOf({ type: "array", items: schema("DeadLetter"), description: "Newest first; redriven ones are not listed." }),
	Redriven: {
		type: "object",
		additionalProperties: false,
		required: ["id", "queue", "message_id", "status", "redriven_at"],
		properties: {
			id: { type: "string", format: "uuid" },
			queue: { type: "string" },
			message_id: { type: ["string", "null"] },
			status: { type: "string", const: "redriven" },
			redriven_at: dateTime
		}
	},
	AdminMe: {
		type: "object",
		additionalProperties: false,
		required: ["user", "roles", "permissions"],
		description: "The caller and the permissions of its roles (the panel shows only what the role may do).",
		properties: {
			user: schema("User"),
			roles: { type: "array", items: { type: "string", enum: ["user", "support", "admin"] } },
			permissions: { type: "array", items: { type: "string" }, examples: [["users.read", "kyc.read", "kyc.decide"]] }
		}
	},
	UserList: listOf({ type: "array", items: schema("User"), description: "Newest first." }),
	SuspendRequest: {
		type: "object",
		additionalProperties: false,
		required: ["reason"],
		properties: { reason: { type: "string", minLength: 1, maxLength: 500, description: "Required (422 without); sent to the user in the suspension email." } }
	},
	UnsuspendRequest: {
		type: "object",
		additionalProperties: false,
		properties: { reason: { type: "string", minLength: 1, maxLength: 500 } }
	},
	RolesRequest: {
		type: "object",
		additionalProperties: false,
		required: ["roles"],
		properties: { roles: { type: "array", minItems: 1, items: { type: "string", enum: ["user", "support", "admin"] } } }
	},
	KycReview: {
		type: "object",
		additionalProperties: false,
		required: ["id", "user_id", "user", "full_name", "date_of_birth", "country", "document_type", "document_number", "status", "reason", "submitted_at", "decided_at"],
		properties: {
			id: { type: "string", format: "uuid" },
			user_id: { type: "string", format: "uuid" },
			user: {
				type: ["object", "null"],
				additionalProperties: false,
				required: ["id", "email", "name", "status"],
				properties: { id: { type: "string", format: "uuid" }, email: { type: "string" }, name: { type: "string" }, status: { type: "string", enum: ["active", "suspended"] } }
			},
			full_name: { type: "string" },
			date_of_birth: { type: "string", format: "date" },
			country: { type: "string", pattern: "^[A-Z]{2}$" },
			document_type: { type: "string", enum: ["passport", "national_id", "driving_license"] },
			document_number: { type: "string", description: "Masked: only the last four characters are shown." },
			status: { type: "string", enum: ["pending", "verified", "rejected"] },
			reason: { type: ["string", "null"] },
			submitted_at: dateTime,
			decided_at: nullableDateTime
		}
	},
	KycReviewList: listOf({ type: "array", items: schema("KycReview"), description: "Pending: oldest first; decided: newest first." }),
	KycDecisionRequest: {
		type: "object",
		additionalProperties: false,
		required: ["decision"],
		properties: {
			decision: { type: "string", enum: ["approve", "reject"] },
			reason: { type: "string", minLength: 1, maxLength: 500, description: "Told to the user when rejected." }
		}
	},
	KycDecision: {
		type: "object",
		additionalProperties: false,
		required: ["user", "submission"],
		properties: { user: schema("User"), submission: schema("KycReview") }
	},
	RefundRequest: {
		type: "object",
		additionalProperties: false,
		properties: {
			amount: { type: "integer", minimum: 1, maximum: 99999999, description: "Minor units; default: all that is left to refund (422 if more)." },
			reason: { type: "string", minLength: 1, maxLength: 500 }
		}
	},
	AuditEntry: {
		type: "object",
		additionalProperties: false,
		required: ["id", "seq", "at", "actor_id", "actor_email", "action", "target_type", "target_id", "request_id", "ip", "details", "prev_hash", "hash"],
		properties: {
			id: { type: "string", format: "uuid" },
			seq: { type: "integer", minimum: 1, description: "Position in the hash chain." },
			at: dateTime,
			actor_id: { type: ["string", "null"], format: "uuid" },
			actor_email: { type: ["string", "null"] },
			action: { type: "string", examples: ["user.suspend", "user.unsuspend", "user.roles", "kyc.approve", "kyc.reject", "payment.refund", "jobs.run", "dead-letter.redrive"] },
			target_type: { type: "string", examples: ["user", "payment", "job", "dead_letter"] },
			target_id: { type: ["string", "null"] },
			request_id: { type: ["string", "null"] },
			ip: { type: ["string", "null"] },
			details: { description: "What changed." },
			prev_hash: { type: "string", pattern: "^[0-9a-f]{64}$", description: "The previous entry's hash (64 zeros for the first)." },
			hash: { type: "string", pattern: "^[0-9a-f]{64}$", description: "SHA-256 over the canonical JSON of the entry's content followed by `prev_hash`." }
		}
	},
	AuditList: listOf({ type: "array", items: schema("AuditEntry"), description: "Newest first." }),
	AuditVerification: {
		type: "object",
		additionalProperties: false,
		required: ["valid", "entries"],
		properties: {
			valid: { type: "boolean" },
			entries: { type: "integer", minimum: 0, description: "Entries checked (up to and including the first broken one)." },
			first_broken_id: { type: "string", format: "uuid", description: "Present when the chain is broken: the first entry whose hash or link does not hold." }
		}
	},
	SystemOverview: {
		type: "object",
		additionalProperties: false,
		required: ["nodes", "services", "health", "queues", "jobs"],
		properties: {
			nodes: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["id", "available", "local", "hostname", "ip", "cpu", "moleculer", "last_heartbeat_at"],
					properties: {
						id: { type: "string" },
						available: { type: "boolean" },
						local: { type: "boolean", description: "The node that answered." },
						hostname: { type: ["string", "null"] },
						ip: { type: ["string", "null"] },
						cpu: { type: ["number", "null"] },
						moleculer: { type: ["string", "null"] },
						last_heartbeat_at: nullableDateTime
					}
				}
			},
			services: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["name", "version", "available", "nodes"],
					properties: { name: { type: "string" }, version: { type: ["string", "number", "null"] }, available: { type: "boolean" }, nodes: { type: "array", items: { type: "string" } } }
				}
			},
			health: { type: "object", additionalProperties: { type: "string", enum: ["ok", "down"] }, description: "Per service: it and its database answer." },
			queues: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["name", "pending", "dead"],
					properties: { name: { type: "string" }, pending: { type: "integer", minimum: 0 }, dead: { type: "integer", minimum: 0 } }
				}
			},
			jobs: { type: ["array", "null"], items: { type: "object" }, description: "The job schedules, as `GET /admin/jobs` lists them (null when the jobs service is down)." }
		}
	},
	AdminStats: {
		type: "object",
		additionalProperties: false,
		required: ["payments", "signups", "deliveries", "requests"],
		description: "The dashboard's numbers. Days are UTC, ascending, every day present (zeros included).",
		properties: {
			payments: {
				type: "array",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["day", "succeeded", "failed", "refunded", "amount_succeeded"],
					properties: {
						day: { type: "string", format: "date" },
						succeeded: { type: "integer", minimum: 0, description: "Payments made that day that took money (refunded later or not)." },
						failed: { type: "integer", minimum: 0 },
						refunded: { type: "integer", minimum: 0, description: "Payments made that day refunded since, in full or in part." },
						amount_succeeded: { type: "object", additionalProperties: { type: "integer", minimum: 0 }, description: "Per currency, in minor units.", examples: [{ usd: 129900 }] }
					}
				}
			},
			signups: {
				type: "array",
				items: { type: "object", additionalProperties: false, required: ["day", "count"], properties: { day: { type: "string", format: "date" }, count: { type: "integer", minimum: 0 } } }
			},
			deliveries: {
				type: "object",
				additionalProperties: false,
				required: ["queued", "sent", "failed", "dead"],
				description: "Notification deliveries by status (queued counts those being sent).",
				properties: { queued: { type: "integer", minimum: 0 }, sent: { type: "integer", minimum: 0 }, failed: { type: "integer", minimum: 0 }, dead: { type: "integer", minimum: 0 } }
			},
			requests: {
				type: "array",
				description: "Per service over every node, from Moleculer's metrics: the recent request rate, latency over the last minute, errors since start.",
				items: {
					type: "object",
					additionalProperties: false,
					required: ["service", "requests_per_s", "p50_ms", "p99_ms", "errors"],
					properties: {
						service: { type: "string" },
						requests_per_s: { type: "number", minimum: 0 },
						p50_ms: { type: "number", minimum: 0 },
						p99_ms: { type: "number", minimum: 0 },
						errors: { type: "integer", minimum: 0 }
					}
				}
			}
		}
	},
	FieldError: {
		type: "object",
		additionalProperties: false,
		required: ["field", "message"],
		properties: { field: { type: "string" }, message: { type: "string" } }
	},
	Problem: {
		type: "object",
		description: "RFC 9457 problem details. Never holds a stack trace, SQL, a password hash or a secret.",
		required: ["type", "title", "status", "detail", "instance", "request_id"],
		properties: {
			type: { type: "string", const: "about:blank" },
			title: { type: "string" },
			status: { type: "integer", minimum: 400, maximum: 599 },
			detail: { type: "string" },
			instance: { type: "string", description: "The request path." },
			request_id: { type: "string", minLength: 1, maxLength: 128 },
			errors: { type: "array", minItems: 1, items: schema("FieldError"), description: "Per-field validation errors." }
		},
		examples: [
			{
				type: "about:blank",
				title: "Unprocessable Entity",
				status: 422,
				detail: "email must be a valid address",
				instance: "/api/v1/auth/register",
				request_id: "0f4c2a1e-5b7d-4c1a-9e3f-2b8d6a7c9e10",
				errors: [{ field: "email", message: "email must be a valid address" }]
			}
		]
	}
};

const headers: Record<string, HeaderObject> = {
	"X-Request-ID": {
		description: "The request id: the client's own when valid (1-128 chars of [A-Za-z0-9._:-]), else one the gateway made.",
		required: true,
		schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,128}$" }
	},
	"Retry-After": { description: "Seconds to wait before trying again.", required: true, schema: { type: "integer", minimum: 0 } },
	"RateLimit-Limit": { description: "Requests allowed per window for this client.", required: true, schema: { type: "integer", minimum: 1 } },
	"RateLimit-Remaining": { description: "Requests left in the current window.", required: true, schema: { type: "integer", minimum: 0 } },
	"RateLimit-Reset": { description: "Seconds until the window resets.", required: true, schema: { type: "integer", minimum: 0 } },
	Location: { description: "The new resource.", required: true, schema: { type: "string" } },
	"Set-Cookie": { description: "A cookie the browser keeps for this flow.", required: false, schema: { type: "string" } },
	"Cache-Control": { description: "Caching rules for this answer.", required: false, schema: { type: "string" } },
	"Idempotent-Replayed": {
		description: "`true` on an answer replayed for a repeated Idempotency-Key (nothing was charged again).",
		required: false,
		schema: { type: "string", const: "true" }
	}
};

const RATE_HEADERS = { "RateLimit-Limit": header("RateLimit-Limit"), "RateLimit-Remaining": header("RateLimit-Remaining"), "RateLimit-Reset": header("RateLimit-Reset") };

const problem = (description: string, extra: Record<string, Reference> = {}): ResponseObject => ({
	description,
	headers: { "X-Request-ID": header("X-Request-ID"), ...extra },
	content: { "application/problem+json": { schema: schema("Problem") } }
});

const responses: Record<string, ResponseObject> = {
	BadRequest: problem("The body is not valid JSON."),
	Unauthorized: problem("No, malformed, expired, tampered or revoked access token."),
	Forbidden: problem("Authenticated but not allowed."),
	NotFound: problem("No such resource or route."),
	Conflict: problem("Conflicts with the current state."),
	PayloadTooLarge: problem("The body is over the limit (default 1 MiB)."),
	UnsupportedMediaType: problem("A body that is not JSON."),
	UnprocessableEntity: problem("Validation failed: wrong type, missing, unknown or forbidden field, out of range; or a body that is not a JSON object."),
	TooManyRequests: problem("Rate limited.", { "Retry-After": header("Retry-After"), ...RATE_HEADERS }),
	ServiceUnavailable: problem("A service needed for this request is down or its circuit is open.", { "Retry-After": header("Retry-After") }),
	InternalError: problem("An unexpected error; the body holds no internal detail.")
};

const parameters: Record<string, ParameterObject> = {
	RequestId: {
		name: "X-Request-ID",
		in: "header",
		required: false,
		description: "A request id to use for this request (1-128 chars of [A-Za-z0-9._:-]); anything else is replaced.",
		schema: { type: "string" }
	},
	UserId: { name: "id", in: "path", required: true, description: "A user id (422 when not a UUID).", schema: { type: "string", format: "uuid" } },
	PaymentId: { name: "id", in: "path", required: true, description: "A payment id (422 when not a UUID).", schema: { type: "string", format: "uuid" } },
	IdempotencyKey: {
		name: "Idempotency-Key",
		in: "header",
		required: true,
		description:
			"Required (400 without). Per user, kept 24 h: the same key with the same body replays the first answer (`Idempotent-Replayed: true`) and charges nothing; with another body it is 422; while the first request runs, 409.",
		schema: { type: "string", minLength: 1, maxLength: 255 }
	}
};

const json = (name: string) => ({ "application/json": { schema: schema(name) } });

/** A success answer of a rate-limited `/api/v1` or `/.well-known` route. */
const ok = (description: string, body?: string, extra: Record<string, Reference> = {}): ResponseObject => ({
	description,
	headers: { "X-Request-ID": header("X-Request-ID"), ...RATE_HEADERS, ...extra },
	...(body ? { content: json(body) } : {})
});

type ErrorName = keyof typeof responses;
const ERROR_STATUS: Record<string, ErrorName> = {
	"400": "BadRequest",
	"401": "Unauthorized",
	"403": "Forbidden",
	"404": "NotFound",
	"409": "Conflict",
	"413": "PayloadTooLarge",
	"415": "UnsupportedMediaType",
	"422": "UnprocessableEntity",
	"429": "TooManyRequests",
	"500": "InternalError",
	"503": "ServiceUnavailable"
};

/** Errors every `/api/v1` and `/.well-known` route can give: the gateway parses bodies, checks params and rate limits on all of them. */
const GATEWAY_ERRORS = ["400", "413", "415", "422", "429", "500", "503"];

function errors(statuses: string[], overrides: Record<string, ResponseObject> = {}): Record<string, ResponseObject | Reference> {
	const out: Record<string, ResponseObject | Reference> = {};
	for (const s of [...new Set([...GATEWAY_ERRORS, ...statuses])].sort()) out[s] = overrides[s] ?? response(ERROR_STATUS[s]);
	return out;
}

const PUBLIC: Record<string, string[]>[] = [];
const requestId = { $ref: "#/components/parameters/RequestId" };

const body = (name: string, required = true): RequestBodyObject => ({ required, content: json(name) });

function op(o: Omit<OperationObject, "parameters"> & { parameters?: (ParameterObject | Reference)[] }): OperationObject {
	return { ...o, parameters: [requestId, ...(o.parameters ?? [])] };
}

/** A plain answer of a probe or docs route (not rate limited). */
const plain = (description: string, content: Record<string, MediaTypeObject>, extra: Record<string, Reference> = {}): ResponseObject => ({
	description,
	headers: { "X-Request-ID": header("X-Request-ID"), ...extra },
	content
});

// Payments: the 402 of a declined card, and the list paging parameters.
const paymentDeclined: ResponseObject = {
	description: "The card was declined; the payment is stored as `failed`. A replay of this answer carries `Idempotent-Replayed: true`.",
	headers: { "X-Request-ID": header("X-Request-ID"), "Idempotent-Replayed": header("Idempotent-Replayed") },
	content: { "application/problem+json": { schema: schema("PaymentDeclined") } }
};
/** `?limit=&offset=` of every list route. */
const PAGE_QUERY: ParameterObject[] = [
	{ name: "limit", in: "query", required: false, description: "Page size (1-100, default 20).", schema: { type: "integer", minimum: 1, maximum: 100 } },
	{ name: "offset", in: "query", required: false, description: "Items to skip (default 0).", schema: { type: "integer", minimum: 0 } }
];
const paymentId = { $ref: "#/components/parameters/PaymentId" };

const paths: Record<string, PathItemObject> = {
	"/api/v1/auth/register": {
		post: op({
			operationId: "register",
			summary: "Create an account",
			description: "Sends a welcome email and a verification link.",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("RegisterRequest"),
			responses: {
				"201": ok("The new user.", "User", { Location: header("Location") }),
				...errors(["409"], { "409": problem("The email is already registered.") })
			}
		})
	},
	"/api/v1/auth/login": {
		post: op({
			operationId: "login",
			summary: "Log in with email and password",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("LoginRequest"),
			responses: {
				"200": ok("A token pair.", "TokenPair"),
				...errors(["401", "403"], {
					"401": problem("Wrong email or password (the same body for both)."),
					"403": problem("The account is suspended, or (with REQUIRE_VERIFIED_EMAIL=true) its email address is not verified yet."),
					"429": problem("Rate limited, or too many failed logins for this account (10 per 15 minutes by default), even with the right password.", {
						"Retry-After": header("Retry-After"),
						...RATE_HEADERS
					})
				})
			}
		})
	},
	"/api/v1/auth/refresh": {
		post: op({
			operationId: "refresh",
			summary: "Swap a refresh token for a new token pair",
			description: "Refresh tokens are single use; presenting a used one revokes its whole session.",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("RefreshRequest"),
			responses: {
				"200": ok("A new token pair; the refresh token is rotated.", "TokenPair"),
				...errors(["401"], { "401": problem("Unknown, used, expired or revoked refresh token.") })
			}
		})
	},
	"/api/v1/auth/logout": {
		post: op({
			operationId: "logout",
			summary: "End the current session",
			description: "The session's access tokens fail at once (401).",
			tags: ["auth"],
			requestBody: body("LogoutRequest", false),
			responses: { "204": ok("Logged out."), ...errors(["401"]) }
		})
	},
	"/api/v1/auth/password/forgot": {
		post: op({
			operationId: "forgotPassword",
			summary: "Ask for a password reset link",
			description: "Always 202 (no account enumeration); when the address has an account, a reset link valid 30 minutes is emailed. Rate limited per address and per client.",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("ForgotPasswordRequest"),
			responses: {
				"202": ok("Accepted; an email follows when the address has an account."),
				...errors([], {
					"429": problem("Rate limited, or too many reset requests for this address or from this client.", { "Retry-After": header("Retry-After"), ...RATE_HEADERS })
				})
			}
		})
	},
	"/api/v1/auth/password/reset": {
		post: op({
			operationId: "resetPassword",
			summary: "Set a new password with a reset token",
			description: "Every session of the user is revoked: their access and refresh tokens fail at once.",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("ResetPasswordRequest"),
			responses: {
				"204": ok("The password is changed."),
				...errors([], { "400": problem("The reset token is unknown, already used or expired (the detail says which).") })
			}
		})
	},
	"/api/v1/auth/email/verify": {
		post: op({
			operationId: "verifyEmail",
			summary: "Confirm an email address with a verification token",
			description: "The user's `email_verified` becomes true.",
			tags: ["auth"],
			security: PUBLIC,
			requestBody: body("VerifyEmailRequest"),
			responses: {
				"204": ok("The email address is verified."),
				...errors([], { "400": problem("The verification token is unknown, already used or expired (the detail says which).") })
			}
		})
	},
	"/api/v1/auth/oauth/{provider}/authorize": {
		get: op({
			operationId: "oauthAuthorize",
			summary: "Start an OAuth 2.0 / OpenID Connect login",
			description:
				"Redirects to the provider's authorization endpoint with `state`, `nonce` and PKCE `S256`, bound to a server-side record (10 minutes, single use) and to this browser by an HttpOnly `oauth_binding` cookie. Providers come from OAUTH_PROVIDERS. No redirect or return parameter is accepted (422).",
			tags: ["auth"],
			security: PUBLIC,
			parameters: [{ name: "provider", in: "path", required: true, description: "A name in OAUTH_PROVIDERS.", schema: { type: "string", pattern: "^[A-Za-z0-9_]{1,64}$" } }],
			responses: {
				"302": {
					description: "To the provider.",
					headers: { "X-Request-ID": header("X-Request-ID"), ...RATE_HEADERS, Location: header("Location"), "Set-Cookie": header("Set-Cookie"), "Cache-Control": header("Cache-Control") }
				},
				...errors(["404"], { "404": problem("No such login provider."), "503": problem("The provider cannot be reached.", { "Retry-After": header("Retry-After") }) })
			}
		})
	},
	"/api/v1/auth/oauth/{provider}/callback": {
		get: op({
			operationId: "oauthCallback",
			summary: "Finish an OAuth 2.0 / OpenID Connect login",
			description:
				"Where the provider sends the browser back. The code is swapped once, with the PKCE verifier; the ID token's signature, `iss`, `aud`, `exp` and `nonce` are checked. The first login creates the user (`email_verified` from the provider); a verified provider email links to the existing account, an unverified one never does (409).",
			tags: ["auth"],
			security: PUBLIC,
			parameters: [
				{ name: "provider", in: "path", required: true, description: "A name in OAUTH_PROVIDERS.", schema: { type: "string", pattern: "^[A-Za-z0-9_]{1,64}$" } },
				{ name: "code", in: "query", required: false, description: "The authorization code.", schema: { type: "string", maxLength: 2048 } },
				{ name: "state", in: "query", required: false, description: "The state of the authorization request.", schema: { type: "string", maxLength: 512 } },
				{ name: "iss", in: "query", required: false, description: "The provider's issuer (RFC 9207).", schema: { type: "string", maxLength: 2048 } },
				{ name: "error", in: "query", required: false, description: "The provider's error, when the login was refused.", schema: { type: "string", maxLength: 256 } }
			],
			responses: {
				"200": ok("A token pair.", "TokenPair", { "Set-Cookie": header("Set-Cookie"), "Cache-Control": header("Cache-Control") }),
				...errors(["401", "403", "404", "409"], {
					"400": problem("The state is missing, unknown, already used, expired or from another browser; or the provider refused the login."),
					"401": problem("The provider refused the code (e.g. replayed), or its ID token failed verification (signature, iss, aud, exp, nonce)."),
					"403": problem("The account is suspended, or the provider shared no email address."),
					"404": problem("No such login provider."),
					"409": problem("An account has this email address and the provider has not verified it."),
					"503": problem("The provider cannot be reached.", { "Retry-After": header("Retry-After") })
				})
			}
		})
	},
	"/api/v1/auth/sessions": {
		get: op({
			operationId: "listSessions",
			summary: "The caller's live sessions",
			tags: ["auth"],
			parameters: PAGE_QUERY,
			responses: { "200": ok("A page of the caller's sessions.", "SessionList"), ...errors(["401"]) }
		})
	},
	"/api/v1/auth/sessions/{id}": {
		delete: op({
			operationId: "revokeSession",
			summary: "Revoke one of the caller's sessions",
			description: "Its access tokens fail at once (401) and its refresh token no longer works.",
			tags: ["auth"],
			parameters: [{ name: "id", in: "path", required: true, description: "A session id from `GET /api/v1/auth/sessions`.", schema: { type: "string", maxLength: 64 } }],
			responses: {
				"204": ok("The session is revoked."),
				...errors(["401", "404"], { "404": problem("No live session of the caller has this id.") })
			}
		})
	},
	"/api/v1/users/me": {
		get: op({
			operationId: "getMe",
			summary: "The caller's profile",
			tags: ["users"],
			responses: { "200": ok("The caller.", "User"), ...errors(["401", "404"]) }
		}),
		patch: op({
			operationId: "updateMe",
			summary: "Change the caller's name or phone",
			tags: ["users"],
			requestBody: body("UpdateMeRequest"),
			responses: { "200": ok("The updated user.", "User"), ...errors(["401", "404"]) }
		})
	},
	"/api/v1/users/me/kyc": {
		get: op({
			operationId: "getKyc",
			summary: "The caller's KYC status",
			tags: ["users"],
			responses: { "200": ok("The KYC status and the last submission's dates.", "KycStatus"), ...errors(["401", "404"]) }
		}),
		post: op({
			operationId: "submitKyc",
			summary: "Submit KYC details for review",
			description: "Allowed when the KYC status is `none` or `rejected`.",
			tags: ["users"],
			requestBody: body("KycSubmission"),
			responses: {
				"202": ok("Accepted for review.", "KycAccepted"),
				...errors(["401", "404", "409"], { "409": problem("KYC is already pending or verified.") })
			}
		})
	},
	"/api/v1/users/{id}": {
		get: op({
			operationId: "getUser",
			summary: "A user by id",
			description: "Allowed for the user themself and for `support` and `admin`.",
			tags: ["users"],
			parameters: [{ $ref: "#/components/parameters/UserId" }],
			responses: {
				"200": ok("The user.", "User"),
				...errors(["401", "403", "404"], { "403": problem("Another user's profile, without the support or admin role.") })
			}
		})
	},
	"/api/v1/payments/charge": {
		post: op({
			operationId: "charge",
			summary: "Charge the caller's payment method",
			description:
				"Idempotent by the `Idempotency-Key` header. A decline is 402 with the payment stored as `failed`. The receipt email and SMS follow through the queue; the answer does not wait for them.",
			tags: ["payments"],
			parameters: [{ $ref: "#/components/parameters/IdempotencyKey" }],
			requestBody: body("ChargeRequest"),
			responses: {
				"201": ok("The payment (or the replay of the first answer for this key).", "Payment", { Location: header("Location"), "Idempotent-Replayed": header("Idempotent-Replayed") }),
				...errors(["400", "401", "402", "403", "409", "422"], {
					"400": problem("The `Idempotency-Key` header is missing or longer than 255 characters; or the body is not valid JSON."),
					"402": paymentDeclined,
					"403": problem("`user_id` names another user."),
					"409": problem("A request with this `Idempotency-Key` is still being processed."),
					"422": problem("Validation failed; an unknown `payment_method`; or the `Idempotency-Key` was used with a different body."),
					"503": problem("The payment provider (or a needed service) is unavailable; retry with the same `Idempotency-Key`.", { "Retry-After": header("Retry-After") })
				})
			}
		})
	},
	"/api/v1/payments": {
		get: op({
			operationId: "listPayments",
			summary: "The caller's payments",
			tags: ["payments"],
			parameters: PAGE_QUERY,
			responses: { "200": ok("A page of payments, newest first.", "PaymentList"), ...errors(["401"]) }
		})
	},
	"/api/v1/payments/{id}": {
		get: op({
			operationId: "getPayment",
			summary: "A payment by id",
			description: "Allowed for its owner and for `support` and `admin`.",
			tags: ["payments"],
			parameters: [paymentId],
			responses: {
				"200": ok("The payment.", "Payment"),
				...errors(["401", "403", "404"], { "403": problem("Another user's payment, without the support or admin role.") })
			}
		})
	},
	"/api/v1/payments/{id}/receipt": {
		get: op({
			operationId: "getReceipt",
			summary: "The receipt of a succeeded payment",
			description: "Exists once the payment has succeeded (and stays when it is refunded).",
			tags: ["payments"],
			parameters: [paymentId],
			responses: {
				"200": ok("The receipt.", "Receipt"),
				...errors(["401", "403", "404"], {
					"403": problem("Another user's payment, without the support or admin role."),
					"404": problem("No such payment, or it has no receipt (it has not succeeded).")
				})
			}
		})
	},
	"/api/v1/webhooks/stripe": {
		post: op({
			operationId: "stripeWebhook",
			summary: "Stripe events",
			description:
				"Verified with `STRIPE_WEBHOOK_SECRET` on the raw body (`Stripe-Signature`, timestamps within 300 s either way). Each event id is processed once; `payment_intent.succeeded`, `payment_intent.payment_failed` and `charge.refunded` are applied in any order, and never move a payment backwards.",
			tags: ["payments"],
			security: PUBLIC,
			parameters: [{ name: "Stripe-Signature", in: "header", required: true, description: "Stripe's signature header: `t=<unix time>,v1=<hex HMAC-SHA256>`.", schema: { type: "string" } }],
			requestBody: body("StripeEvent"),
			responses: {
				"200": ok("Received (also for a repeated event, or one the service does not act on).", "WebhookReceived"),
				...errors([], { "400": problem("Webhooks are not configured; the signature is missing or wrong; the timestamp is more than 300 s old or ahead; or the body is not a Stripe event.") })
			}
		})
	},
	"/api/v1/notifications": {
		get: op({
			operationId: "listNotifications",
			summary: "The caller's notifications",
			description: "Emails and SMS sent to the caller (welcome, receipts, …), newest first, with their delivery status.",
			tags: ["notifications"],
			parameters: PAGE_QUERY,
			responses: { "200": ok("A page of the caller's notifications.", "NotificationList"), ...errors(["401"]) }
		})
	},
	"/api/v1/admin/me": {
		get: op({
			operationId: "adminMe",
			summary: "The caller's roles and permissions (support, admin)",
			description: "What the panel may show this caller.",
			tags: ["admin"],
			responses: { "200": ok("The caller and its permissions.", "AdminMe"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/users": {
		get: op({
			operationId: "adminListUsers",
			summary: "Search users (support, admin)",
			description: "`q` matches the email or the name (case-insensitive substring).",
			tags: ["admin"],
			parameters: [
				{ name: "q", in: "query", required: false, description: "Part of an email or name.", schema: { type: "string", maxLength: 320 } },
				{ name: "status", in: "query", required: false, description: "Only users with this status.", schema: { type: "string", enum: ["active", "suspended"] } },
				...PAGE_QUERY
			],
			responses: { "200": ok("A page of users.", "UserList"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/users/{id}": {
		get: op({
			operationId: "adminGetUser",
			summary: "One user (support, admin)",
			tags: ["admin"],
			parameters: [{ $ref: "#/components/parameters/UserId" }],
			responses: { "200": ok("The user.", "User"), ...errors(["401", "403", "404"]) }
		})
	},
	"/api/v1/admin/users/{id}/suspend": {
		post: op({
			operationId: "adminSuspendUser",
			summary: "Suspend a user (admin)",
			description: "At once: the status becomes `suspended`, every session is revoked (cached tokens drop on every gateway: the next request is 401, a login 403), and the user is emailed the reason. Audited.",
			tags: ["admin"],
			parameters: [{ $ref: "#/components/parameters/UserId" }],
			requestBody: body("SuspendRequest"),
			responses: { "200": ok("The suspended user.", "User"), ...errors(["401", "403", "404", "409"]) }
		})
	},
	"/api/v1/admin/users/{id}/unsuspend": {
		post: op({
			operationId: "adminUnsuspendUser",
			summary: "Lift a suspension (admin)",
			description: "The user may log in again; tokens from before the suspension stay revoked. Audited.",
			tags: ["admin"],
			parameters: [{ $ref: "#/components/parameters/UserId" }],
			requestBody: body("UnsuspendRequest", false),
			responses: { "200": ok("The user, active.", "User"), ...errors(["401", "403", "404"]) }
		})
	},
	"/api/v1/admin/users/{id}/roles": {
		put: op({
			operationId: "adminSetRoles",
			summary: "Set a user's roles (admin)",
			description: "Replaces the roles; when they change, the user's sessions end so new tokens carry the new roles. An admin cannot take the admin role from themself (409). Audited.",
			tags: ["admin"],
			parameters: [{ $ref: "#/components/parameters/UserId" }],
			requestBody: body("RolesRequest"),
			responses: { "200": ok("The user.", "User"), ...errors(["401", "403", "404", "409"]) }
		})
	},
	"/api/v1/admin/kyc": {
		get: op({
			operationId: "adminListKyc",
			summary: "KYC submissions to review (support, admin)",
			tags: ["admin"],
			parameters: [
				{ name: "status", in: "query", required: false, description: "Default `pending`.", schema: { type: "string", enum: ["pending", "verified", "rejected"] } },
				{ name: "user_id", in: "query", required: false, description: "Only this user's submissions.", schema: { type: "string", format: "uuid" } },
				...PAGE_QUERY
			],
			responses: { "200": ok("A page of submissions.", "KycReviewList"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/kyc/{user_id}/decision": {
		post: op({
			operationId: "adminDecideKyc",
			summary: "Approve or reject a user's pending KYC (support, admin)",
			description: "`kyc_status` becomes `verified` or `rejected` and the user is emailed; 409 when nothing is pending. Audited.",
			tags: ["admin"],
			parameters: [{ name: "user_id", in: "path", required: true, description: "A user id (422 when not a UUID).", schema: { type: "string", format: "uuid" } }],
			requestBody: body("KycDecisionRequest"),
			responses: { "200": ok("The user and the decided submission.", "KycDecision"), ...errors(["401", "403", "404", "409"]) }
		})
	},
	"/api/v1/admin/payments": {
		get: op({
			operationId: "adminListPayments",
			summary: "Every user's payments (support, admin)",
			tags: ["admin"],
			parameters: [
				{ name: "user_id", in: "query", required: false, description: "Only this user's payments.", schema: { type: "string", format: "uuid" } },
				{ name: "status", in: "query", required: false, description: "Only payments in this status.", schema: { type: "string", enum: ["processing", "succeeded", "failed", "refunded", "partially_refunded"] } },
				...PAGE_QUERY
			],
			responses: { "200": ok("A page of payments, newest first.", "PaymentList"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/payments/{id}/refund": {
		post: op({
			operationId: "adminRefundPayment",
			summary: "Refund a payment in full or in part (admin)",
			description: "Through the payment provider; the status becomes `refunded` or `partially_refunded` and the customer is notified. 409 when the payment cannot be refunded (any more). Audited.",
			tags: ["admin"],
			parameters: [paymentId],
			requestBody: body("RefundRequest", false),
			responses: { "200": ok("The payment.", "Payment"), ...errors(["401", "403", "404", "409"]) }
		})
	},
	"/api/v1/admin/audit": {
		get: op({
			operationId: "adminAuditLog",
			summary: "The audit trail (admin)",
			description: "Append-only and hash-chained; newest first.",
			tags: ["admin"],
			parameters: [
				{ name: "actor_id", in: "query", required: false, description: "Entries by this actor.", schema: { type: "string", format: "uuid" } },
				{ name: "action", in: "query", required: false, description: "Entries of this action, e.g. `user.suspend`.", schema: { type: "string", maxLength: 64 } },
				{ name: "target_id", in: "query", required: false, description: "Entries about this target.", schema: { type: "string", maxLength: 128 } },
				{ name: "target_type", in: "query", required: false, description: "Entries about this kind of target.", schema: { type: "string", maxLength: 32 } },
				{ name: "from", in: "query", required: false, description: "At or after this time.", schema: { type: "string", format: "date-time" } },
				{ name: "to", in: "query", required: false, description: "At or before this time.", schema: { type: "string", format: "date-time" } },
				...PAGE_QUERY
			],
			responses: { "200": ok("A page of audit entries.", "AuditList"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/audit/verify": {
		get: op({
			operationId: "adminVerifyAudit",
			summary: "Verify the audit trail's hash chain (admin)",
			description: "Recomputes every entry's hash in order; names the first entry whose content or link was altered.",
			tags: ["admin"],
			responses: { "200": ok("Whether the chain holds.", "AuditVerification"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/system": {
		get: op({
			operationId: "adminSystem",
			summary: "Nodes, services, health, queues and jobs (support, admin)",
			tags: ["admin"],
			responses: { "200": ok("The system view.", "SystemOverview"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/stats": {
		get: op({
			operationId: "adminStats",
			summary: "Dashboard numbers (support, admin)",
			description: "An extension of the contract: payments and sign-ups per day, deliveries by status, request rate and latency per service.",
			tags: ["admin"],
			parameters: [{ name: "days", in: "query", required: false, description: "1 to 90 (default 14).", schema: { type: "integer", minimum: 1, maximum: 90 } }],
			responses: { "200": ok("The numbers.", "AdminStats"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/jobs": {
		get: op({
			operationId: "listJobs",
			summary: "Scheduled jobs and queues (support, admin)",
			description: "Each schedule with its last run, last status and next run; each queue with its pending and dead counts.",
			tags: ["admin"],
			responses: { "200": ok("Schedules and queues.", "JobsOverview"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/jobs/{name}/run": {
		post: op({
			operationId: "runJob",
			summary: "Run a job now (admin)",
			description: "Queues a run of the job; presses within the same minute (by any admin) are one run. Audited.",
			tags: ["admin"],
			parameters: [{ name: "name", in: "path", required: true, description: "A job name, as `GET /admin/jobs` lists them.", schema: { type: "string", minLength: 1, maxLength: 64 } }],
			responses: { "202": ok("The run is queued (or was already).", "JobRunAccepted"), ...errors(["401", "403", "404"]) }
		})
	},
	"/api/v1/admin/dead-letters": {
		get: op({
			operationId: "listDeadLetters",
			summary: "Parked messages (support, admin)",
			description: "Messages a queue gave up on, with their error and request id, newest first.",
			tags: ["admin"],
			parameters: PAGE_QUERY,
			responses: { "200": ok("A page of dead letters.", "DeadLetterList"), ...errors(["401", "403"]) }
		})
	},
	"/api/v1/admin/dead-letters/{id}/redrive": {
		post: op({
			operationId: "redriveDeadLetter",
			summary: "Put a parked message back (admin)",
			description: "A delivery goes back to `queued` with its attempts reset; 409 when it was redriven before. Audited.",
			tags: ["admin"],
			parameters: [{ name: "id", in: "path", required: true, description: "A dead letter id (422 when not a UUID).", schema: { type: "string", format: "uuid" } }],
			responses: { "202": ok("Put back.", "Redriven"), ...errors(["401", "403", "404", "409"]) }
		})
	},
	"/.well-known/jwks.json": {
		get: op({
			operationId: "jwks",
			summary: "The public keys that sign access tokens",
			description: "The current and previous signing keys (RFC 7517).",
			tags: ["auth"],
			security: PUBLIC,
			responses: {
				"200": ok("The JWKS.", "Jwks"),
				...errors([])
			}
		})
	},
	"/health": {
		get: op({
			operationId: "health",
			summary: "Liveness",
			tags: ["health"],
			security: PUBLIC,
			responses: { "200": plain("The gateway node lives.", json("Health")) }
		})
	},
	"/health/ready": {
		get: op({
			operationId: "ready",
			summary: "Readiness",
			description: "Ready when every service the API needs is reachable and its database answers.",
			tags: ["health"],
			security: PUBLIC,
			responses: {
				"200": plain("Ready.", { "application/json": { schema: { type: "object", allOf: [schema("Readiness")], properties: { status: { const: "ok" } } } } }),
				"503": plain(
					"Not ready: `checks` names the services that are down.",
					{ "application/json": { schema: { type: "object", allOf: [schema("Readiness")], properties: { status: { const: "unavailable" } } } } },
					{ "Retry-After": header("Retry-After") }
				)
			}
		})
	},
	"/api/openapi.json": {
		get: op({
			operationId: "openapi",
			summary: "This document",
			tags: ["docs"],
			security: PUBLIC,
			responses: {
				"200": plain("The OpenAPI 3.1 document.", {
					"application/json": {
						schema: {
							type: "object",
							required: ["openapi", "info", "paths", "components"],
							properties: {
								openapi: { type: "string", pattern: "^3\\.1\\.\\d+$" },
								info: { type: "object" },
								paths: { type: "object" },
								components: { type: "object" }
							}
						}
					}
				})
			}
		})
	},
	"/api/docs": {
		get: op({
			operationId: "docs",
			summary: "The API documentation page",
			description: "Renders this document; every asset is served locally, so it works offline.",
			tags: ["docs"],
			security: PUBLIC,
			responses: { "200": plain("An HTML page.", { "text/html": { schema: { type: "string" } } }) }
		})
	},
	"/api/docs/{file}": {
		get: op({
			operationId: "docsAsset",
			summary: "A static asset of the documentation page",
			tags: ["docs"],
			security: PUBLIC,
			parameters: [
				{ name: "file", in: "path", required: true, schema: { type: "string", enum: ["swagger-ui.css", "swagger-ui-bundle.js", "init.js"] } }
			],
			responses: {
				"200": plain("The asset.", { "text/css": { schema: { type: "string" } }, "application/javascript": { schema: { type: "string" } } }),
				"404": response("NotFound")
			}
		})
	},
	"/admin": {
		get: op({
			operationId: "adminPanel",
			summary: "The admin panel",
			description: "A single-page app for support and admin staff; it signs in through `/api/v1/auth/login` and calls the admin routes. Every asset is served locally (no CDN), with `Content-Security-Policy: script-src 'self'`.",
			tags: ["docs"],
			security: PUBLIC,
			responses: { "200": plain("An HTML page.", { "text/html": { schema: { type: "string" } } }) }
		})
	},
	"/admin/assets/{file}": {
		get: op({
			operationId: "adminPanelAsset",
			summary: "A static asset of the admin panel",
			description: "The panel's own modules and styles, and the vendor modules it uses (Preact, htm, Chart.js) served from the installed packages. Only known files are served.",
			tags: ["docs"],
			security: PUBLIC,
			parameters: [{ name: "file", in: "path", required: true, schema: { type: "string", pattern: "^[A-Za-z0-9._-]+$" } }],
			responses: {
				"200": plain("The asset.", { "text/css": { schema: { type: "string" } }, "text/javascript": { schema: { type: "string" } } }),
				"404": response("NotFound")
			}
		})
	}
};

const DOCUMENT: OpenApiDocument = {
	openapi: "3.1.0",
	info: {
		title: "Moleculer microservices API",
		version: "1.0.0",
		description:
			"Bodies are JSON with snake_case fields; ids are UUIDs; times are ISO 8601 in UTC. Every error is RFC 9457 `application/problem+json`. " +
			"Every response carries `X-Request-ID`. `/api/v1` and `/.well-known` routes are rate limited per client IP."
	},
	servers: [{ url: "/", description: "This gateway" }],
	tags: [
		{ name: "auth", description: "Accounts, sessions and tokens" },
		{ name: "users", description: "Profiles and KYC" },
		{ name: "payments", description: "Charges, receipts, refunds and Stripe webhooks" },
		{ name: "notifications", description: "Emails and SMS sent to the caller" },
		{ name: "admin", description: "Operating the system: jobs and dead letters" },
		{ name: "health", description: "Probes" },
		{ name: "docs", description: "This documentation" }
	],
	security: [{ bearerAuth: [] }],
	paths,
	components: {
		schemas,
		responses,
		parameters,
		headers,
		securitySchemes: {
			bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "`Authorization: Bearer <access_token>` from login or refresh." }
		}
	}
};

/** The OpenAPI 3.1 document of every public route. */
export function openapiDocument(): OpenApiDocument {
	return DOCUMENT;
}
