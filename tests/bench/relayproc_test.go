package bench

import (
	"crypto/sha256"
	"os"
	"testing"
	"time"
)

// A process's CPU reads in nanoseconds, not in whole ticks: a few
// milliseconds of work show as more than nothing, and as no less than
// the ticks say.
func TestReadProcCountsLessThanATick(t *testing.T) {
	if ns, err := runTime(os.Getpid()); err != nil || ns == 0 {
		t.Skipf("this kernel gives no per-thread run times (%v, %v): CPU is read in ticks", ns, err)
	}
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	busy := time.Now().Add(3 * time.Millisecond)
	sum := sha256.Sum256(nil)
	for time.Now().Before(busy) {
		sum = sha256.Sum256(sum[:])
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Fatalf("CPU went from %v to %v over 3 ms of work", before.CPU, after.CPU)
	}
	if after.CPU%(time.Second/clockTicks) == 0 {
		t.Errorf("CPU %v is a whole number of ticks: read from utime and stime alone", after.CPU)
	}
	if after.HWMKB <= 0 {
		t.Errorf("peak RSS %d kB", after.HWMKB)
	}
}

func TestReadProcOfNoProcess(t *testing.T) {
	if _, err := readProc(1 << 30); err == nil {
		t.Fatal("read a process that does not exist")
	}
	if _, err := runTime(1 << 30); err == nil {
		t.Fatal("summed the threads of a process that does not exist")
	}
	if got := cpuOf(1 << 30); got != 0 {
		t.Fatalf("cpuOf a process that does not exist: %v", got)
	}
}
