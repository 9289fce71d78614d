package mql

// stepHook, when a test sets it, is called once per step of the loops whose
// total cost must stay linear in the size of their input (name scans of
// short lists, path conflict checks), so that tests can assert the number
// of steps instead of timing. It is nil outside tests, and tests that set it
// must not run in parallel.
var stepHook func()

// countStep reports one step to stepHook.
func countStep() {
	if stepHook != nil {
		stepHook()
	}
}
