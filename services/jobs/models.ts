import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export const RUN_STATUSES = ["queued", "running", "succeeded", "failed", "skipped"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** One attempt at one slot of a job. UNIQUE(job, slot, attempt): the replica whose INSERT wins runs it. */
export interface JobRunRow {
	id: string;
	job: string;
	/** The scheduled time (ISO, UTC) or `manual:<minute>`. */
	slot: string;
	attempt: number;
	status: RunStatus;
	/** A queued run (a retry) does not start before this. */
	run_after: Date;
	started_at: Date | null;
	finished_at: Date | null;
	duration_ms: number | null;
	/** The node running it, and until when its claim holds unless renewed. */
	owner: string | null;
	lease_until: Date | null;
	error: string | null;
	request_id: string | null;
	/** What the run found and did, as JSON. */
	report: string | null;
	created_at: Date;
	updated_at: Date;
}

/** One row per job: who runs it now. A run starts only by taking this row (so runs of a job never overlap). */
export interface JobLockRow {
	job: string;
	run_id: string | null;
	lease_until: Date | null;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface JobModels {
	JobRun: M<JobRunRow>;
	JobLock: M<JobLockRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): JobModels {
	const JobRun = sequelize.define("JobRun", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		job: { type: DataTypes.STRING(64), allowNull: false },
		slot: { type: DataTypes.STRING(64), allowNull: false },
		attempt: { type: DataTypes.INTEGER, allowNull: false },
		status: { type: DataTypes.STRING(16), allowNull: false },
		run_after: { type: DataTypes.DATE, allowNull: false },
		started_at: { type: DataTypes.DATE },
		finished_at: { type: DataTypes.DATE },
		duration_ms: { type: DataTypes.INTEGER },
		owner: { type: DataTypes.STRING(255) },
		lease_until: { type: DataTypes.DATE },
		error: { type: DataTypes.STRING(1000) },
		request_id: { type: DataTypes.STRING(128) },
		report: { type: DataTypes.TEXT }
	}, { tableName: "job_runs" }) as M<JobRunRow>;

	const JobLock = sequelize.define("JobLock", {
		job: { type: DataTypes.STRING(64), primaryKey: true },
		run_id: { type: DataTypes.UUID },
		lease_until: { type: DataTypes.DATE }
	}, { tableName: "job_locks", timestamps: false }) as M<JobLockRow>;

	return { JobRun, JobLock };
}
