import { kycProblems, MIN_AGE_YEARS, type KycInput } from "../../services/users/kyc";

const TODAY = new Date("2024-06-15T12:00:00Z");
const input = (date_of_birth: string): KycInput => ({
	full_name: "Ada Lovelace",
	date_of_birth,
	country: "GB",
	document_type: "passport",
	document_number: "AB123456"
});
const AGE = `the person must be at least ${MIN_AGE_YEARS} years old`;
const INVALID = "date_of_birth is not a valid date";

describe("kycProblems", () => {
	it("accepts an adult with a real date of birth", () => {
		expect(kycProblems(input("1990-01-31"), TODAY)).toEqual([]);
		expect(kycProblems(input("1900-01-01"), TODAY)).toEqual([]);
	});

	it.each(["2023-02-29", "2001-02-30", "1990-13-01", "1990-00-10", "1990-04-31", "1990-01-00", "1899-12-31"])("refuses %s as no real date", dob => {
		expect(kycProblems(input(dob), TODAY)).toEqual([{ field: "date_of_birth", message: INVALID }]);
	});

	it("accepts a leap day that existed", () => {
		expect(kycProblems(input("2004-02-29"), TODAY)).toEqual([]);
	});

	it("refuses a minor and a date in the future", () => {
		expect(kycProblems(input("2010-05-01"), TODAY)).toEqual([{ field: "date_of_birth", message: AGE }]);
		expect(kycProblems(input("2030-01-01"), TODAY)).toEqual([{ field: "date_of_birth", message: AGE }]);
	});

	it("counts the 18th birthday itself as adult, the day before as not", () => {
		expect(kycProblems(input("2006-06-15"), TODAY)).toEqual([]);
		expect(kycProblems(input("2006-06-16"), TODAY)).toEqual([{ field: "date_of_birth", message: AGE }]);
	});

	it("makes someone born on 29 February an adult on 1 March of a common year", () => {
		expect(kycProblems(input("2004-02-29"), new Date("2022-02-28T23:59:59Z"))).toEqual([{ field: "date_of_birth", message: AGE }]);
		expect(kycProblems(input("2004-02-29"), new Date("2022-03-01T00:00:00Z"))).toEqual([]);
	});
});
