import fs from "node:fs";
import path from "node:path";
import { QueryInterface, QueryTypes, Sequelize, Transaction } from "sequelize";
import { SequelizeStorage, Umzug, type RunnableMigration } from "umzug";
import { config, databaseFor } from "./config";

export type Migration = RunnableMigration<QueryInterface>;

/** A Sequelize instance for a service's own database (PostgreSQL by URL, else SQLite under DATA_DIR). */
export function createSequelize(service: string, env: NodeJS.ProcessEnv = process.env): Sequelize {
	const target = databaseFor(service, env);
	const common = {
		logging: false as const,
		define: { underscored: true, timestamps: true, createdAt: "created_at", updatedAt: "updated_at" }
	};
	if (target.dialect === "postgres") {
		return new Sequelize(target.url, {
			...common,
			dialect: "postgres",
			pool: { max: config().DB_POOL_MAX, min: 0, idle: 10000, acquire: 10000 }
		});
	}
	fs.mkdirSync(path.dirname(target.storage), { recursive: true });
	return keepTransactionConnection(serializeTransactions(
		new Sequelize({
			...common,
			dialect: "sqlite",
			storage: target.storage,
			transactionType: Transaction.TYPES.IMMEDIATE,
			retry: { match: [/SQLITE_BUSY/], max: 20 },
			pool: { max: 1, min: 0, idle: 10000 }
		})
	));
}

interface SqliteConnection {
	uuid?: string;
	filename?: string;
}
interface SqliteConnections {
	connections: Record<string, SqliteConnection>;
	getConnection(options?: { uuid?: string }): Promise<SqliteConnection>;
	releaseConnection(connection: SqliteConnection, force?: boolean): unknown;
}

/** Where the connection a transaction ended with waits for the next one (among the manager's, so `close()` closes it too). */
const SPARE = "spare-transaction-connection";

/**
 * Sequelize opens the SQLite database file for every transaction and closes it when the transaction
 * ends: about 1.4 ms of CPU a transaction here, more than a login's two INSERTs in it. Instead, the
 * connection of a transaction that ended is kept open for the next one. Sequelize hands a connection
 * back (releaseConnection) only after its COMMIT or ROLLBACK succeeded, so it is out of any transaction;
 * one that failed to end is destroyed, as before. One spare is enough: transactions take turns
 * (serializeTransactions); one begun while another runs opens a file, as before.
 */
function keepTransactionConnection(sequelize: Sequelize): Sequelize {
	const manager = sequelize.connectionManager as unknown as SqliteConnections;
	const get = manager.getConnection.bind(manager);
	const release = manager.releaseConnection.bind(manager);
	manager.getConnection = async options => {
		const spare = manager.connections[SPARE];
		if (!options?.uuid || options.uuid === "default" || !spare) return get(options);
		delete manager.connections[SPARE];
		manager.connections[options.uuid] = spare;
		return spare;
	};
	manager.releaseConnection = (connection, force) => {
		if (!connection.uuid || force || connection.filename === ":memory:" || manager.connections[SPARE]) return release(connection, force);
		delete manager.connections[connection.uuid];
		manager.connections[SPARE] = connection;
		return undefined;
	};
	return sequelize;
}

/**
 * SQLite has one writer at a time, and Sequelize opens a connection per transaction: concurrent
 * transactions then fight over the lock with SQLITE_BUSY retries (seconds under load). Managed
 * transactions of one process take turns in a queue instead; reads outside transactions still run
 * concurrently (WAL). Never open a second transaction from inside a transaction's callback.
 */
function serializeTransactions(sequelize: Sequelize): Sequelize {
	const original = sequelize.transaction.bind(sequelize) as (...args: unknown[]) => Promise<unknown>;
	let tail: Promise<unknown> = Promise.resolve();
	(sequelize as unknown as { transaction: (...args: unknown[]) => Promise<unknown> }).transaction = (...args: unknown[]) => {
		if (typeof args[args.length - 1] !== "function") return original(...args); // unmanaged: caller commits
		const run = () => original(...args);
		const result = tail.then(run, run);
		tail = result.catch(() => undefined);
		return result;
	};
	return sequelize;
}

/**
 * Runs an upsert and gives the row it left: on PostgreSQL one statement (`RETURNING columns`). Sequelize's
 * SQLite driver runs an INSERT without returning its rows, so there it is the upsert and then `select`
 * (with the same replacements and transaction).
 */
export async function upsertReturning<T extends object>(
	sequelize: Sequelize,
	upsert: string,
	columns: string,
	select: string,
	options: { replacements: Record<string, unknown>; transaction?: Transaction }
): Promise<T | undefined> {
	if (sequelize.getDialect() === "postgres") {
		return (await sequelize.query<T>(`${upsert} RETURNING ${columns}`, { ...options, type: QueryTypes.SELECT }))[0];
	}
	await sequelize.query(upsert, options);
	return (await sequelize.query<T>(select, { ...options, type: QueryTypes.SELECT }))[0];
}

/**
 * Applies pending migrations. On PostgreSQL a transaction-scoped advisory lock (keyed by the
 * service) makes replicas that start together take turns: the first applies, the others find nothing left.
 */
export async function migrate(sequelize: Sequelize, service: string, migrations: Migration[]): Promise<string[]> {
	const umzug = new Umzug<QueryInterface>({
		migrations,
		context: sequelize.getQueryInterface(),
		storage: new SequelizeStorage({ sequelize, tableName: "schema_migrations" }),
		logger: undefined
	});
	if (sequelize.getDialect() !== "postgres") {
		return (await umzug.up()).map(m => m.name);
	}
	const lock = await sequelize.transaction();
	try {
		await sequelize.query("SELECT pg_advisory_xact_lock(hashtext(:key))", {
			replacements: { key: `migrations:${service}` },
			transaction: lock
		});
		const applied = (await umzug.up()).map(m => m.name);
		await lock.commit();
		return applied;
	} catch (err) {
		await lock.rollback();
		throw err;
	}
}
