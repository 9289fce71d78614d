package admin

import "net/http"

// noSniff sets X-Content-Type-Options: nosniff on every answer of next
// (the API's JSON, /metrics, /readyz, /healthz, the console's pages and
// assets, and the errors of the checks in front of them), so that a
// browser never runs one as another type than the declared one: an answer
// that echoes a client's input is then never taken for a script or a
// page.
func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
