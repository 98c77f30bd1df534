package stage

import "time"

// Steps of a batch timed for a StepObserver (a per-stage latency trace).
const (
	// StepFetch is from the first record's timestamp to its batch in hand: time in Kafka, waiting for the
	// partition's reader, and the fetch.
	StepFetch = "fetch"
	// StepLock is the wait in the stage's Middleware before the batch is processed (the inbound fast
	// path's write lock: another handler's writes in flight).
	StepLock = "lock"
	// StepDecide is the handler's Process (decode, validate, decide).
	StepDecide = "decide"
	// StepProduce is from the handler's return to the first write of the batch being sent.
	StepProduce = "produce"
	// StepAck is one sink write, from sent to acknowledged (each attempt).
	StepAck = "ack"
)

// StepObserver is an Observer that is also told how long each step of a batch took. It is optional:
// with an Observer that lacks it the runtime takes no timestamps beyond those it takes anyway.
type StepObserver interface {
	Step(stage, step string, took time.Duration)
}

// stepper times steps for a StepObserver; its zero value (no observer) does nothing.
type stepper struct {
	obs   StepObserver
	stage string
}

func newStepper(o Observer, stage string) stepper {
	s, _ := o.(StepObserver)
	return stepper{obs: s, stage: stage}
}

// since reports step as lasting from start until now, and returns now (zero when nobody listens).
func (s stepper) since(step string, start time.Time) time.Time {
	if s.obs == nil || start.IsZero() {
		return time.Time{}
	}
	now := time.Now()
	s.obs.Step(s.stage, step, now.Sub(start))
	return now
}

// now is the time for a later since, or zero when nobody listens.
func (s stepper) now() time.Time {
	if s.obs == nil {
		return time.Time{}
	}
	return time.Now()
}
