// After Jest's own summary, one plain closing line: "tests: N passed, N failed[, N skipped]".
// A suite that could not run (e.g. it failed to compile) counts as a failure.
class SummaryReporter {
	onRunComplete(_contexts, results) {
		const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
		const skipped = results.numPendingTests + results.numTodoTests;
		const line = `tests: ${results.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`;
		// Jest's own summary is written right after this returns; the line goes after it.
		setImmediate(() => process.stderr.write(line));
	}
}
module.exports = SummaryReporter;
