package dev.dsmoe.cli;

import dev.dsmoe.dist.Mpi;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.train.TrainData;
import dev.dsmoe.train.Trainer;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * A rank of {@link DistributedTrainTest}'s jobs (test classpath, started by mpirun): trains the
 * tiny DS-MoE through the {@link Trainer} API on the MPI job for {@code STEPS} steps while making
 * garbage every step (so the JVM collects, reaching safepoints, under MPI), then writes
 * {@code OUT/rank-R.txt}: the SHA-256 of its weights and its garbage collection count.
 */
public final class MpiProbe {
    public static void main(String[] args) throws Exception {
        Path data = Path.of(args[0]), out = Path.of(args[1]);
        long steps = Long.parseLong(args[2]);
        dev.dsmoe.kernels.Parallel.setThreads(1);
        try (Mpi mpi = Mpi.init(); TrainData td = TrainData.open(data)) {
            ModelConfig c = ModelPresets.get("dsmoe-small");
            String[] kv = {"hidden_size", "32", "num_hidden_layers", "1", "num_attention_experts", "2", "num_heads_per_expert", "2",
                    "num_key_value_heads", "2", "head_dim", "8", "num_mlp_experts", "4", "expert_intermediate_size", "16",
                    "max_position_embeddings", "32", "vocab_size", Integer.toString(td.vocabSize())};
            for (int i = 0; i < kv.length; i += 2) c = ConfigJson.with(c, kv[i], kv[i + 1]);
            Trainer.Options o = new Trainer.Options(2, 16, 2, 1e-3, 1e-4, 1, 0.01, 1.0, 99, steps, 0, 0, 0, 1, 0);
            Trainer t = Trainer.fresh(c.validate(), o, mpi, td.train(2, 16, 99), null, out, null, td.description(), td.fingerprint());
            t.run(new Trainer.Listener() {
                long sink;

                @Override
                public void onStep(Trainer.StepMetrics m) {
                    for (int i = 0; i < 64; i++) sink += new byte[1 << 20].length; // 64 MiB of garbage a step
                }
            });
            byte[] bytes = new byte[t.params().length * 4];
            java.nio.ByteBuffer.wrap(bytes).asFloatBuffer().put(t.params());
            long gcs = 0;
            for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) gcs += Math.max(0, b.getCollectionCount());
            Files.writeString(out.resolve("rank-" + mpi.rank() + ".txt"),
                    HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)) + " " + gcs + "\n");
        }
    }
}
