package http

// QueryParams returns the query parameters a route takes, as openapi.json
// documents them (sorted).
func QueryParams(method, pattern string) []string { return queryParams[method+" "+pattern] }
