package jobspec

// Class is what a failure means for its job: certain (fail now: another
// attempt would fail the same way) or transient (retry later, while
// attempts remain: the fault may pass).
type Class string

// Failure classes.
const (
	Certain   Class = "certain"
	Transient Class = "transient"
)

// failureClasses is the one table that classifies failures, by reason. The
// jobrunner sets Result.Retryable from it and the supervisor decides from it
// (see ClassOf); nothing else says whether a failure is retried.
var failureClasses = map[Reason]Class{
	ReasonEngineFailed: Certain,   // the engine (or pip) said no: the input or configuration
	ReasonTimeout:      Certain,   // it would run as long again
	ReasonVenvMissing:  Certain,   // the run's build must be made again first
	ReasonBadInput:     Certain,   // the job's own data
	ReasonBadSpec:      Certain,   // the spec itself
	ReasonLimit:        Certain,   // it would exceed the limit again
	ReasonEnvironment:  Transient, // a host fault: a crash, a folder that cannot be made
	ReasonDiskFull:     Transient, // until space is freed
	ReasonCancelled:    Transient, // stopped, not failed (a cancel or shutdown decides)
	ReasonLeaseLapsed:  Transient, // the supervisor stopped renewing: not the job's fault
	ReasonNoResult:     Transient, // the jobrunner ended without a result (killed, crashed)
}

// ClassOf is the class of a failure of reason r. An unknown reason (a newer
// jobrunner's) is transient: the attempts bound its retries.
func ClassOf(r Reason) Class {
	if c, ok := failureClasses[r]; ok {
		return c
	}
	return Transient
}
