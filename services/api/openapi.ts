/** The OpenAPI 3.1 document of every public route. */
export function openapiDocument(): Record<string, unknown> {
	return {
		openapi: "3.1.0",
		info: { title: "Moleculer microservices API", version: "1.0.0" },
		paths: {}
	};
}
