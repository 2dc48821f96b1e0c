package dev.dsmoe.kernels;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The code that reads oneDNN's native result buffers must not read them with
 * {@code FloatVector.fromMemorySegment}. That method's type profile is one for the whole process:
 * a native segment seen there, beside the heap segments the decode kernels read fp32 weights
 * from, made C2 compile those kernels with a type switch on every weight load (batched q8_0
 * decode after a oneDNN prompt at 0.68x; BENCHMARKS.md, session 10). No test of results can see
 * it (the bits are the same), so this one reads the sources.
 */
class NativeBufferReadsTest {

    @Test
    void oneDnnResultsAreNotReadAsFloatVectorsFromSegments() throws IOException {
        for (String name : new String[] {"OneDnn.java", "PromptAttention.java"}) {
            Path source = Path.of("src/main/java/dev/dsmoe/kernels", name);
            String code = Files.readString(source).replaceAll("(?s)/\\*.*?\\*/", "").replaceAll("//[^\n]*", "");
            assertFalse(code.contains("FloatVector.fromMemorySegment"), name + " reads a native buffer through FloatVector.fromMemorySegment");
        }
    }
}
