// TxnProducer writes records with the official Java client's transactions, as a Kafka Connect
// exactly-once source connector does, for tests of cimstream's read_committed readers.
//
// Usage: java TxnProducer <bootstrap> <transactional.id>
// Commands, one per line on stdin; each is answered on stdout with "ok [offset]" or "err <message>":
//   begin                               begin a transaction
//   send<TAB>topic<TAB>partition<TAB>key<TAB>value   send one record (in the open transaction) and
//                                       wait for its offset
//   commit | abort                      end the transaction
// End of input closes the producer; a transaction still open is then left to the broker's timeout.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: TxnProducer <bootstrap> <transactional.id>");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[1]);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "60000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            System.out.println("ok");
            System.out.flush();
            String line;
            while ((line = in.readLine()) != null) {
                String[] f = line.split("\t", 5);
                try {
                    switch (f[0]) {
                        case "begin":
                            producer.beginTransaction();
                            System.out.println("ok");
                            break;
                        case "send":
                            RecordMetadata md = producer.send(new ProducerRecord<>(f[1], Integer.valueOf(f[2]), f[3], f[4])).get();
                            System.out.println("ok " + md.offset());
                            break;
                        case "commit":
                            producer.commitTransaction();
                            System.out.println("ok");
                            break;
                        case "abort":
                            producer.abortTransaction();
                            System.out.println("ok");
                            break;
                        default:
                            System.out.println("err unknown command " + f[0]);
                    }
                } catch (Exception e) {
                    System.out.println("err " + e.toString().replace('\n', ' '));
                }
                System.out.flush();
            }
        }
    }
}
