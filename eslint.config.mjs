import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", "data/", "coverage/", "public/vendor/", "scratch/", ".compare/"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		files: ["**/*.js"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly", process: "readonly", setImmediate: "readonly" } }
	},
	{
		// The admin panel: browser ES modules served as they are.
		files: ["public/admin/**/*.js"],
		languageOptions: {
			sourceType: "module",
			globals: Object.fromEntries(
				["window", "document", "location", "fetch", "sessionStorage", "atob", "URLSearchParams", "Intl", "setTimeout", "clearTimeout", "console"].map(g => [g, "readonly"])
			)
		}
	},
	{
		rules: {
			"@typescript-eslint/no-explicit-any": "off",
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
			"@typescript-eslint/no-require-imports": "off"
		}
	}
);
