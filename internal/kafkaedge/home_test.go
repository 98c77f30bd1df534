package kafkaedge

import (
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
)

// HomePartition is where kafka-go's Murmur2Balancer (the Java client's partitioner) puts a key, for
// partition counts within and beyond its shared list of partitions.
func TestHomePartitionIsTheJavaPartitioners(t *testing.T) {
	var b kafka.Murmur2Balancer
	for _, n := range []int{1, 6, 4096, 5000} {
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		for i := range 200 {
			key := []byte(fmt.Sprint("customer-", i))
			if got, want := HomePartition(key, n), b.Balance(kafka.Message{Key: key}, parts...); got != want {
				t.Fatalf("%s over %d partitions: %d, want %d", key, n, got, want)
			}
		}
	}
}

// It runs for every record: no allocation.
func TestHomePartitionDoesNotAllocate(t *testing.T) {
	key := []byte("customer-1")
	if n := testing.AllocsPerRun(100, func() { HomePartition(key, 6) }); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
