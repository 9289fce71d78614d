package runner

// WithCircuit exposes withCircuit to the external tests.
var WithCircuit = withCircuit
