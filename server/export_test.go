package server

import "time"

// SetEnrollmentClock makes en read the time from now: set it before the
// enrollment's first call.
func SetEnrollmentClock(en *Enrollment, now func() time.Time) { en.now = now }
