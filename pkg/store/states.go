package store

// Status is a job's state: the status column of builds and runs. Both
// tables share queued, failed and cancelled; a run is running and ends
// succeeded, a build is building and ends ready.
type Status string

// Job states, as the ADE API writes and reads them.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"   // runs only
	StatusBuilding  Status = "building"  // builds only
	StatusSucceeded Status = "succeeded" // runs only
	StatusReady     Status = "ready"     // builds only
	StatusFailed    Status = "failed"
	// StatusCancelled is what the ADE API (or `supervisor cancel`) writes
	// on a job it cancels.
	StatusCancelled Status = "cancelled"
)

// ActiveStatus is the status of a claimed job of kind k.
func ActiveStatus(k Kind) Status {
	if k == KindBuild {
		return StatusBuilding
	}
	return StatusRunning
}

// EndStatus is the status a job of kind k ends in: its success status
// (succeeded, ready) or failed.
func EndStatus(k Kind, succeeded bool) Status {
	switch {
	case !succeeded:
		return StatusFailed
	case k == KindBuild:
		return StatusReady
	}
	return StatusSucceeded
}

// Final reports whether a job does not leave status s by itself.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCancelled, StatusReady:
		return true
	}
	return false
}
