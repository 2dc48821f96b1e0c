// Load times of fp32 and quantized checkpoints (BENCHMARKS.md, "Quantized checkpoints"): a
// single-file Java program run against the built jar (./dsmoe --version builds it).
//
//   J="$JAVA_HOME/bin/java -Xmx8g --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp target/dsmoe4j.jar"
//   $J bench/QuantizedLoad.java random dsmoe-1b DIR    # a preset with random weights (Init, seed 1) as an fp32 checkpoint
//   $J bench/QuantizedLoad.java load DIR f32|bf16|q8_0|stored
//
// `load` times, in a fresh JVM, InferenceModel.load (as `--dtype TYPE` at load, or `stored`: the
// checkpoint's own type) and then the first decode step (every weight read once: a mapped file's
// pages faulted in, or the converted copy read; the JIT is cold, so this one is mostly compile time).
import dev.dsmoe.infer.Engine;
import dev.dsmoe.infer.ExpertSelection;
import dev.dsmoe.infer.InferenceModel;
import dev.dsmoe.io.ConfigJson;
import dev.dsmoe.io.ModelFiles;
import dev.dsmoe.io.SafeTensors;
import dev.dsmoe.kernels.MatVec;
import dev.dsmoe.model.Init;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ModelPresets;
import dev.dsmoe.model.ParamCounts;
import dev.dsmoe.model.ParamLayout;
import java.nio.file.Files;
import java.nio.file.Path;

public class QuantizedLoad {
    public static void main(String[] a) throws Exception {
        if (a.length == 3 && a[0].equals("random")) random(a[1], Path.of(a[2]));
        else if (a.length == 3 && a[0].equals("load")) load(Path.of(a[1]), a[2]);
        else {
            System.err.println("usage: QuantizedLoad random PRESET DIR | load DIR f32|bf16|q8_0|stored");
            System.exit(2);
        }
    }

    static void random(String preset, Path out) throws Exception {
        ModelConfig c = ModelPresets.get(preset);
        ParamLayout layout = ParamLayout.of(c);
        float[] p = layout.newBuffer();
        Init.initialize(layout, p, 1);
        Files.createDirectories(out);
        Files.writeString(out.resolve(ModelFiles.CONFIG), ConfigJson.toJson(c) + "\n");
        ModelFiles.modelTensors(layout, p, SafeTensors.DType.F32).write(out.resolve(ModelFiles.MODEL));
        System.out.printf("%s: %,d parameters -> %s%n", preset, ParamCounts.of(c).total(), out);
    }

    static void load(Path dir, String type) throws Exception {
        long t0 = System.nanoTime();
        try (InferenceModel m = type.equals("stored") ? InferenceModel.load(dir) : InferenceModel.load(dir, MatVec.DType.parse(type))) {
            long t1 = System.nanoTime();
            Engine e = new Engine(m, ExpertSelection.dense(), 64, 16);
            long t2 = System.nanoTime();
            e.decode(1);
            long t3 = System.nanoTime();
            System.out.printf("%s as %s: load %.0f ms, first decode step %.0f ms%n", dir.getFileName(), type, (t1 - t0) / 1e6,
                    (t3 - t2) / 1e6);
        }
    }
}
