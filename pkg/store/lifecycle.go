package store

import (
	"errors"
	"fmt"
)

// The job lifecycle, the same for builds and runs: its states, and every
// transition as one named event with its guard (what the write is
// conditioned on, so that it cannot overwrite a newer truth) and its
// writes. The store executes the transitions (the method named in each);
// the supervisor decides which one a job takes (its policy: policy.go,
// finish.go, rescue.go); the ADE API and the operator commands make the
// others. Lifecycle below is the one list; the store's tests drive every
// (state, event) pair through the real methods on both databases and
// compare the row with it (lifecycle_test.go).
//
//	           claim                  succeed
//	  queued ──────────────▶ active ──────────────▶ succeeded (run) / ready (build)
//	   ▲  ▲                   │  ↺ renew, start (a run's document)
//	   │  └── retry later, ───┤
//	   │      hand back,      │ fail, rescue out of attempts
//	   │      rescue expired  ▼
//	   │                    failed ◀── fail for a failed build (a queued run)
//	   └── operator retry ── failed, cancelled
//	  queued, active ── cancel (ADE API, `supervisor cancel`) ──▶ cancelled
//
// A pause is no transition: a queued job in a paused scope (everything, a
// workspace, a configuration; pause.go) fails the claim's guard and stays
// queued until the resume; a job already active runs on and ends as usual.

// State is a job's place in the lifecycle; Status gives its name in the ADE
// schema for each kind.
type State string

// Lifecycle states.
const (
	StateQueued    State = "queued"
	StateActive    State = "active" // held under a lease: running (runs), building (builds)
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// States are every lifecycle state.
var States = []State{StateQueued, StateActive, StateSucceeded, StateFailed, StateCancelled}

// Status is the ADE schema's name of st for jobs of kind k.
func (st State) Status(k Kind) Status {
	switch st {
	case StateActive:
		return ActiveStatus(k)
	case StateSucceeded:
		return EndStatus(k, true)
	}
	return Status(st)
}

// StateOf is the lifecycle state of a job of kind k with status s; false
// for a status the lifecycle does not know (another kind's, or unknown).
func StateOf(k Kind, s Status) (State, bool) {
	for _, st := range States {
		if st.Status(k) == s {
			return st, true
		}
	}
	return "", false
}

// Event names a transition.
type Event string

// Lifecycle events.
const (
	EventClaim               Event = "claim"
	EventStart               Event = "start"
	EventRenew               Event = "renew"
	EventSucceed             Event = "succeed"
	EventFail                Event = "fail"
	EventRetryLater          Event = "retry later"
	EventHandBack            Event = "hand back"
	EventCancel              Event = "cancel"
	EventRescueExpired       Event = "rescue expired"
	EventRescueOutOfAttempts Event = "rescue expired, out of attempts"
	EventFailForFailedBuild  Event = "fail for a failed build"
	EventOperatorRetry       Event = "operator retry"
)

// Guard is what a transition's write is conditioned on.
type Guard string

// Guards.
const (
	// GuardClaimable: queued, due by the database's clock, attempts left,
	// not paused, within the fair share, a run's build ready (claimable.go).
	GuardClaimable Guard = "claimable"
	// GuardFence: active, claimed by this worker at this attempt
	// (Fence.where); a write refused by it returns ErrLeaseLost.
	GuardFence Guard = "fence"
	// GuardLiveLease: the fence, and the lease not run out on its holder's
	// monotonic clock (the supervisor renews only those; the database's
	// clock, which may have been stepped forward, is not asked). A lease
	// that ran out is lost, never revived; one a rescue took fails the
	// fence.
	GuardLiveLease Guard = "fence and live lease (holder's clock)"
	// GuardExpired: active at the decided attempt with its lease expired
	// (ExpireLeases, cleanup.go).
	GuardExpired Guard = "lease expired"
	// GuardStatusRead: the status read just before the write (CancelJob,
	// RetryJob): the write loses to any change in between.
	GuardStatusRead Guard = "status as read"
	// GuardBuildFailed: a queued run whose build failed or was cancelled.
	GuardBuildFailed Guard = "build failed"
)

// Holder is what a transition does to the claim (claimed_by).
type Holder string

// Claim effects.
const (
	HolderSet     Holder = "set"     // the claiming worker
	HolderKept    Holder = "kept"    // unchanged
	HolderCleared Holder = "cleared" // NULL
)

// Attempts is what a transition does to attempt_count.
type Attempts string

// Attempt effects.
const (
	AttemptsKept   Attempts = "kept"
	AttemptsAdd    Attempts = "+1"      // a claim starts an attempt
	AttemptsReturn Attempts = "-1"      // a free hand-back gives it back
	AttemptsReset  Attempts = "reset 0" // an operator retry starts a new series
)

// Transition is one named operation of the lifecycle.
type Transition struct {
	Event    Event
	From     []State
	To       State
	Kinds    []Kind // nil: both
	Guard    Guard
	Holder   Holder
	Attempts Attempts
	// Writes are the other columns written (documented; the store's
	// lifecycle test checks status, claimed_by and attempt_count).
	Writes string
	// By is who decides it; Store the method that executes it.
	By, Store string
}

// Lifecycle is every transition. Anything not listed is refused: the
// guarded write changes nothing.
var Lifecycle = []Transition{
	{Event: EventClaim, From: []State{StateQueued}, To: StateActive, Guard: GuardClaimable, Holder: HolderSet, Attempts: AttemptsAdd,
		Writes: "claim_expires_at = now + lease, started_at = now, error_message = NULL",
		By:     "supervisor claim loop (free slots)", Store: "ClaimJobs (claimable.go, queue.go)"},
	{Event: EventStart, From: []State{StateActive}, To: StateActive, Kinds: []Kind{KindRun}, Guard: GuardFence, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "the run's document: status processing, version + 1, a document_changes row",
		By:     "supervisor before the engine starts (jobs.go)", Store: "StartDocument (runs.go)"},
	{Event: EventRenew, From: []State{StateActive}, To: StateActive, Guard: GuardLiveLease, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "claim_expires_at = now + lease",
		By:     "supervisor heartbeat (lease.go)", Store: "RenewLeases (leases.go)"},
	{Event: EventSucceed, From: []State{StateActive}, To: StateSucceeded, Guard: GuardFence, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "exit_code, completed_at/finished_at = now, claim_expires_at = NULL; a run's results and document; a build becomes its configuration's active build",
		By:     "supervisor policy (decide, policy.go)", Store: "FinishRun (runs.go), FinishBuild (builds.go)"},
	{Event: EventFail, From: []State{StateActive}, To: StateFailed, Guard: GuardFence, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "exit_code, error_message, completed_at/finished_at = now, claim_expires_at = NULL; a run's document failed",
		By:     "supervisor policy: a certain failure, or attempts used up (jobspec.ClassOf)", Store: "FinishRun (runs.go), FinishBuild (builds.go)"},
	{Event: EventRetryLater, From: []State{StateActive}, To: StateQueued, Guard: GuardFence, Holder: HolderCleared, Attempts: AttemptsKept,
		Writes: "available_at = now + back-off, error_message, claim_expires_at = NULL",
		By:     "supervisor policy: a transient failure with attempts left", Store: "Requeue (queue.go)"},
	{Event: EventHandBack, From: []State{StateActive}, To: StateQueued, Guard: GuardFence, Holder: HolderCleared, Attempts: AttemptsReturn,
		Writes: "available_at = now, error_message, claim_expires_at = NULL; the hand-back count + 1 (after ADE_WORKER_MAX_HANDBACKS the attempt counts)",
		By:     "supervisor shutdown (finish.go)", Store: "HandBack (handbacks.go)"},
	{Event: EventCancel, From: []State{StateQueued, StateActive}, To: StateCancelled, Guard: GuardStatusRead, Holder: HolderCleared, Attempts: AttemptsKept,
		Writes: "cancelled_at and completed_at (runs) / finished_at (builds) = now, claim_expires_at = NULL",
		By:     "the ADE API, `supervisor cancel`", Store: "CancelJob (cancel.go)"},
	{Event: EventRescueExpired, From: []State{StateActive}, To: StateQueued, Guard: GuardExpired, Holder: HolderCleared, Attempts: AttemptsKept,
		Writes: "available_at = now + back-off, error_message 'Run/Build lease expired', claim_expires_at = NULL",
		By:     "supervisor rescue (expiryDecisions, policy.go)", Store: "ExpireLeases (cleanup.go)"},
	{Event: EventRescueOutOfAttempts, From: []State{StateActive}, To: StateFailed, Guard: GuardExpired, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "completed_at/finished_at = now, error_message '... lease expired after N attempts', claim_expires_at = NULL; a run's document failed",
		By:     "supervisor rescue (expiryDecisions, policy.go)", Store: "ExpireLeases (cleanup.go)"},
	{Event: EventFailForFailedBuild, From: []State{StateQueued}, To: StateFailed, Kinds: []Kind{KindRun}, Guard: GuardBuildFailed, Holder: HolderKept, Attempts: AttemptsKept,
		Writes: "completed_at = now, error_message 'Build failed before run could start'",
		By:     "supervisor cleanup and a failed or cancelled build's end", Store: "FailRunsOfFailedBuilds (cleanup.go)"},
	{Event: EventOperatorRetry, From: []State{StateFailed, StateCancelled}, To: StateQueued, Guard: GuardStatusRead, Holder: HolderCleared, Attempts: AttemptsReset,
		Writes: "available_at = now; error_message, exit_code, started_at and end times NULL",
		By:     "`supervisor retry` (an operator)", Store: "RetryJob (retry.go)"},
}

// Events are every lifecycle event, in Lifecycle's order.
var Events = func() []Event {
	out := make([]Event, len(Lifecycle))
	for i, t := range Lifecycle {
		out[i] = t.Event
	}
	return out
}()

// ErrRefused is returned by Next for an event that does not apply to a job
// in its state.
var ErrRefused = errors.New("refused by the lifecycle")

// Next is the transition event makes from state from for a job of kind k,
// or ErrRefused (wrapped, naming both).
func Next(k Kind, from State, event Event) (Transition, error) {
	for _, t := range Lifecycle {
		if t.Event != event || !t.applies(k) {
			continue
		}
		for _, f := range t.From {
			if f == from {
				return t, nil
			}
		}
		return Transition{}, fmt.Errorf("%s of a %s %s: %w", event, from.Status(k), k, ErrRefused)
	}
	return Transition{}, fmt.Errorf("%s of a %s: no such event for this kind: %w", event, k, ErrRefused)
}

func (t Transition) applies(k Kind) bool {
	if t.Kinds == nil {
		return true
	}
	for _, x := range t.Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// allows reports whether a job of kind k with status s may take event.
func allows(k Kind, s Status, event Event) bool {
	st, ok := StateOf(k, s)
	if !ok {
		return false
	}
	_, err := Next(k, st, event)
	return err == nil
}
