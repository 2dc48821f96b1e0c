package dev.dsmoe.cli;

import dev.dsmoe.data.TokenDataset;
import java.nio.file.Files;
import java.nio.file.Path;

/** The checks on a {@code --data} directory that a verb reads the validation shard of (eval, bench infer). */
final class ValidationData {

    private ValidationData() {}

    /** One line, exit 2, unless {@code dir} is a directory holding a val.bin. */
    static void require(Path dir) {
        if (!Files.isDirectory(dir)) throw new Errors.UserError("--data " + dir + ": no such directory");
        if (!Files.isRegularFile(dir.resolve(TokenDataset.VAL))) {
            throw new Errors.UserError("--data " + dir + ": no " + TokenDataset.VAL + " (run 'dsmoe prepare' to make one)");
        }
    }
}
