import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";

const now = { type: DataTypes.DATE, allowNull: false };

export const migrations: Migration[] = [
	{
		name: "001-jobs",
		async up({ context: qi }) {
			await qi.createTable("job_runs", {
				id: { type: DataTypes.UUID, primaryKey: true },
				job: { type: DataTypes.STRING(64), allowNull: false },
				slot: { type: DataTypes.STRING(64), allowNull: false },
				attempt: { type: DataTypes.INTEGER, allowNull: false },
				status: { type: DataTypes.STRING(16), allowNull: false },
				run_after: now,
				started_at: { type: DataTypes.DATE },
				finished_at: { type: DataTypes.DATE },
				duration_ms: { type: DataTypes.INTEGER },
				owner: { type: DataTypes.STRING(255) },
				lease_until: { type: DataTypes.DATE },
				error: { type: DataTypes.STRING(1000) },
				request_id: { type: DataTypes.STRING(128) },
				report: { type: DataTypes.TEXT },
				created_at: now,
				updated_at: now
			});
			// The slot claim: one row per attempt at a slot, whoever inserts it first runs it.
			await qi.addIndex("job_runs", ["job", "slot", "attempt"], { unique: true, name: "job_runs_job_slot_attempt_unique" });
			await qi.addIndex("job_runs", ["job", "status"]);
			await qi.addIndex("job_runs", ["job", "created_at"]);

			await qi.createTable("job_locks", {
				job: { type: DataTypes.STRING(64), primaryKey: true },
				run_id: { type: DataTypes.UUID },
				lease_until: { type: DataTypes.DATE }
			});
		}
	}
];
