package dev.dsmoe.cli;

import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/** Runs a JMH benchmark class in forked JVMs that get the engine's JVM flags. */
final class JmhLauncher {
    private JmhLauncher() {}

    static int run(String includeRegex, boolean quick) throws Exception {
        Options opt = new OptionsBuilder()
                .include(includeRegex)
                .forks(1)
                .warmupIterations(quick ? 1 : 3)
                .warmupTime(TimeValue.seconds(quick ? 1 : 2))
                .measurementIterations(quick ? 2 : 5)
                .measurementTime(TimeValue.seconds(quick ? 1 : 2))
                .jvmArgsAppend("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                        "-Xmx4g")
                .build();
        new Runner(opt).run();
        return 0;
    }
}
