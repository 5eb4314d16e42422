import DbService from "moleculer-db";
import SequelizeDbAdapter from "moleculer-db-adapter-sequelize";
import type { Service, ServiceSchema } from "moleculer";
import type { ModelStatic, Sequelize, Transaction } from "sequelize";
import { SAFE_TO_RETRY } from "../lib/access";
import { createSequelize, migrate, type Migration } from "../lib/db";

export type Models = Record<string, ModelStatic<any>>;

export interface DbOptions<M extends Models> {
	/** Owning service; also names the database (`<SERVICE>_DATABASE_URL` or `DATA_DIR/<service>.sqlite`). */
	service: string;
	/** The model moleculer-db's adapter works with. */
	primary: keyof M & string;
	models: (sequelize: Sequelize) => M;
	migrations: Migration[];
}

/** What the mixin adds to a service's `this`. */
export interface DbVars<M extends Models> {
	sequelize: Sequelize;
	models: M;
	dbMigrated: boolean;
}

export interface DbMethods {
	transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
	dbHealthy(): Promise<boolean>;
}

/** moleculer-db's Sequelize adapter, made to run versioned migrations instead of `sync()`. */
class MigratingAdapter<M extends Models> extends SequelizeDbAdapter {
	declare db: Sequelize;
	declare model: ModelStatic<any>;
	declare service: Service & DbVars<M>;

	constructor(private readonly dbOpts: DbOptions<M>) {
		super({});
	}

	override async connect(): Promise<void> {
		const sequelize = createSequelize(this.dbOpts.service);
		try {
			await sequelize.authenticate();
			if (sequelize.getDialect() === "sqlite") await sequelize.query("PRAGMA journal_mode=WAL");
			const models = this.dbOpts.models(sequelize);
			const applied = await migrate(sequelize, this.dbOpts.service, this.dbOpts.migrations);
			if (applied.length) this.service.logger.info(`Applied migrations: ${applied.join(", ")}`);
			this.db = sequelize;
			this.model = models[this.dbOpts.primary];
			this.service.sequelize = sequelize;
			this.service.models = models;
			this.service.dbMigrated = true;
		} catch (err) {
			await sequelize.close().catch(() => undefined);
			throw err;
		}
	}

	override async disconnect(): Promise<void> {
		this.service.dbMigrated = false;
		if (this.db) await this.db.close();
	}
}

/**
 * Gives a service its own database: connects (retrying until it answers), applies migrations before
 * the service takes traffic, and offers `this.models`, `this.transaction()`, `this.dbHealthy()` and a
 * `health` action (internal) that the gateway's readiness check calls.
 * moleculer-db's generic CRUD actions are switched off: each service declares the actions it means to offer.
 */
export function dbMixin<M extends Models>(opts: DbOptions<M>): Partial<ServiceSchema> {
	const off = ["find", "count", "list", "create", "insert", "get", "update", "remove"];
	return {
		mixins: [DbService as unknown as Partial<ServiceSchema>],
		model: { name: opts.primary },
		adapter: new MigratingAdapter(opts),
		settings: { idField: "id" },
		actions: {
			...Object.fromEntries(off.map(name => [name, false])),
			/** Readiness of this service: its database answers and its migrations are applied. */
			health: {
				visibility: "public",
				...SAFE_TO_RETRY,
				async handler(this: DbMethods) {
					return { db: await this.dbHealthy() };
				}
			}
		},
		methods: {
			transaction<T>(this: DbVars<M>, fn: (t: Transaction) => Promise<T>): Promise<T> {
				return this.sequelize.transaction(fn);
			},
			async dbHealthy(this: DbVars<M>): Promise<boolean> {
				if (!this.dbMigrated) return false;
				try {
					await this.sequelize.query("SELECT 1");
					return true;
				} catch {
					return false;
				}
			}
		},
		created(this: Service & Record<string, any>) {
			// One adapter per service instance, so two brokers in one process never share a connection.
			this.adapter = new MigratingAdapter(opts);
			this.adapter.init(this.broker, this);
		}
	} as unknown as Partial<ServiceSchema>;
}
