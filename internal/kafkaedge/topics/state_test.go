package topics

import (
	"context"
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
)

// stateAdmin answers as a cluster node that does not know a just-created changelog's configs yet.
type stateAdmin struct{ configErr error }

func (a stateAdmin) Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error) {
	return &kafka.MetadataResponse{Topics: []kafka.Topic{
		{Name: "sessions", Partitions: make([]kafka.Partition, 2)}, {Name: "repartition", Partitions: make([]kafka.Partition, 2)}}}, nil
}

func (a stateAdmin) DescribeConfigs(context.Context, *kafka.DescribeConfigsRequest) (*kafka.DescribeConfigsResponse, error) {
	return &kafka.DescribeConfigsResponse{Resources: []kafka.DescribeConfigResponseResource{
		{ResourceType: int8(kafka.ResourceTypeTopic), ResourceName: "sessions", Error: a.configErr}}}, nil
}

// A broker that cannot describe the changelog yet (a node of a cluster the topic has not reached) is no
// proof of a wrong cleanup.policy: the error is not ErrStateTopics, so start-up asks again instead of
// refusing the topics (the cluster suite met this right after creating them).
func TestCheckStateUnknownConfigsAreNotAMisconfiguration(t *testing.T) {
	err := CheckState(context.Background(), stateAdmin{configErr: kafka.UnknownTopicOrPartition}, "sessions", "repartition")
	if err == nil || errors.Is(err, ErrStateTopics) {
		t.Fatalf("CheckState: %v, want an error that is not ErrStateTopics", err)
	}
}
