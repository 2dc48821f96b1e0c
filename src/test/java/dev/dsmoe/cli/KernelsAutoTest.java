package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.kernels.Kernels;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code --kernels auto} on the command line: the faster backend here, measured once (one stderr
 * line) and read back from the cache afterwards (no line, the same pick); a corrupt cache is
 * measured again and rewritten.
 */
class KernelsAutoTest {

    @TempDir
    Path dir;

    @AfterEach
    void restore() {
        System.clearProperty("dsmoe.cacheDir");
        Kernels.select(Kernels.Backend.BLAS);
    }

    private record Pick(Kernels.Backend backend, String err) {}

    private static Pick choose() {
        PrintStream was = System.err;
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            return new Pick(ComputeOptions.measuredChoice(), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setErr(was);
        }
    }

    @Test
    void measuresOnceThenReadsTheCache() throws Exception {
        System.setProperty("dsmoe.cacheDir", dir.toString());
        Path file = dir.resolve("kernels.properties");
        Pick first = choose();
        assertTrue(first.err().startsWith("dsmoe: --kernels auto: OpenBLAS "), first.err());
        assertTrue(first.err().contains("using " + first.backend().name().toLowerCase()), first.err());
        assertTrue(first.err().contains("kept in " + file), first.err());
        assertEquals(1, first.err().lines().count(), first.err());
        Properties p = new Properties();
        try (var in = Files.newBufferedReader(file)) {
            p.load(in);
        }
        String kept = p.getProperty(ComputeOptions.machineKey());
        assertTrue(kept != null && kept.startsWith(first.backend().name().toLowerCase() + " (OpenBLAS "), String.valueOf(kept));

        Pick again = choose();
        assertEquals(first.backend(), again.backend());
        assertEquals("", again.err(), "read from the cache, not measured again");

        // the pick reaches the backend through the chooser Main installs
        Main.commandLine();
        assertEquals(first.backend().name().toLowerCase(), Kernels.select(Kernels.Backend.AUTO).name());

        Files.writeString(file, "\\u00zz corrupt"); // Properties.load rejects a malformed escape
        Pick remeasured = choose();
        assertTrue(remeasured.err().startsWith("dsmoe: --kernels auto: "), remeasured.err());
        try (var in = Files.newBufferedReader(file)) {
            p.clear();
            p.load(in);
        }
        assertTrue(p.getProperty(ComputeOptions.machineKey()).startsWith(remeasured.backend().name().toLowerCase()));
    }

    /** A cache directory that cannot be created: the pick still stands, and the line says it was not kept. */
    @Test
    void anUnwritableCacheIsMeasuredAndSaidSo() throws Exception {
        Path blocker = dir.resolve("file");
        Files.writeString(blocker, "x");
        System.setProperty("dsmoe.cacheDir", blocker.resolve("sub").toString());
        Pick p = choose();
        assertTrue(p.err().contains("not kept ("), p.err());
    }
}
