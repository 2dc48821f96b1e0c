package dev.dsmoe.io;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A second process for the tests, since file locks are per process: {@code temp TARGET} holds a
 * temporary file for TARGET, {@code dir DIR} holds DIR's checkpoint lock; it prints the held path
 * and holds it until its stdin closes.
 */
public final class LockHolder implements AutoCloseable {
    private final Process process;
    private final String held;

    private LockHolder(Process process, String held) {
        this.process = process;
        this.held = held;
    }

    /** Starts a child JVM holding {@code what} ("temp" or "dir") on {@code path}; returns once it holds it. */
    public static LockHolder start(String what, Path path) throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(java, "-cp", System.getProperty("java.class.path"),
                LockHolder.class.getName(), what, path.toString()));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String line = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8)).readLine();
        if (line == null) {
            p.destroyForcibly();
            throw new IOException("the lock-holding child ended without holding " + path);
        }
        return new LockHolder(p, line);
    }

    /** What the child holds: the temporary file's path, or the lock file's. */
    public String held() {
        return held;
    }

    /** Ends the child as a kill would: the OS releases its locks, nothing is cleaned up. */
    @Override
    public void close() throws IOException {
        process.destroyForcibly();
        try {
            process.waitFor(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    public static void main(String[] args) throws IOException {
        Path path = Path.of(args[1]);
        AutoCloseable hold;
        String held;
        if (args[0].equals("temp")) {
            AtomicFiles.Temp t = AtomicFiles.createTemp(path);
            hold = t;
            held = t.path().toString();
        } else {
            hold = CheckpointFiles.tryLock(path, java.time.Duration.ZERO);
            if (hold == null) throw new IOException(path + ": lock already held");
            held = path.resolve(CheckpointFiles.LOCK).toString();
        }
        System.out.println(held);
        System.out.flush();
        while (System.in.read() >= 0) {
            // hold until the parent closes stdin or kills this process
        }
        System.out.println(hold); // keeps the holder reachable while waiting
    }
}
