package kafkatest

import (
	"context"
	"fmt"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Image is the official Apache Kafka image used when tests start their own broker with Docker.
const Image = "apache/kafka:4.3.1"

// advertisedFile carries the advertised listener into the container: the host port is known only
// after the container starts, so the entrypoint waits for this file before starting Kafka.
const advertisedFile = "/tmp/cimstream-advertised-listeners"

// startContainer runs a single KRaft node from the apache/kafka image and returns its address on the
// host. testcontainers-go's Kafka module starts Confluent images only, so the generic API is used.
func startContainer(ctx context.Context) (testcontainers.Container, string, error) {
	req := testcontainers.ContainerRequest{
		Image:        Image,
		ExposedPorts: []string{"9092/tcp"},
		Env: map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		},
		Entrypoint: []string{"sh", "-c", "while [ ! -f " + advertisedFile + " ]; do sleep 0.1; done; " +
			"export KAFKA_ADVERTISED_LISTENERS=$(cat " + advertisedFile + "); exec /etc/kafka/docker/run"},
		LifecycleHooks: []testcontainers.ContainerLifecycleHooks{{
			PostStarts: []testcontainers.ContainerHook{func(ctx context.Context, c testcontainers.Container) error {
				addr, err := hostAddress(ctx, c)
				if err != nil {
					return err
				}
				listeners := "PLAINTEXT://" + addr + ",BROKER://localhost:9093"
				if err := c.CopyToContainer(ctx, []byte(listeners), advertisedFile, 0o644); err != nil {
					return fmt.Errorf("copy advertised listeners: %w", err)
				}
				return wait.ForLog("Kafka Server started").WaitUntilReady(ctx, c)
			}},
		}},
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		return c, "", err
	}
	addr, err := hostAddress(ctx, c)
	return c, addr, err
}

func hostAddress(ctx context.Context, c testcontainers.Container) (string, error) {
	host, err := c.Host(ctx)
	if err != nil {
		return "", err
	}
	port, err := c.MappedPort(ctx, "9092/tcp")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%s", host, port.Port()), nil
}
