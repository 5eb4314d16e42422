import type { FieldError } from "../../lib/errors";

export interface KycInput {
	full_name: string;
	date_of_birth: string;
	country: string;
	document_type: "passport" | "national_id" | "driving_license";
	document_number: string;
}

export const MIN_AGE_YEARS = 18;

/** Checks the validator cannot express: a real calendar date, in the past, of an adult. */
export function kycProblems(input: KycInput, today = new Date()): FieldError[] {
	const [y, m, d] = input.date_of_birth.split("-").map(Number);
	const dob = new Date(Date.UTC(y, m - 1, d));
	if (dob.getUTCFullYear() !== y || dob.getUTCMonth() !== m - 1 || dob.getUTCDate() !== d || y < 1900) {
		return [{ field: "date_of_birth", message: "date_of_birth is not a valid date" }];
	}
	const adult = new Date(Date.UTC(y + MIN_AGE_YEARS, m - 1, d));
	if (adult.getTime() > today.getTime()) {
		return [{ field: "date_of_birth", message: `the person must be at least ${MIN_AGE_YEARS} years old` }];
	}
	return [];
}
