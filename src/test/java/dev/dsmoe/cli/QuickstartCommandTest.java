package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The whole quickstart pipeline with --tiny models on a tiny corpus; a second run reuses everything. */
class QuickstartCommandTest {

    @TempDir
    Path dir;

    @Test
    void tinyQuickstartWritesTheTablePlotsAndReusesItsWork() throws Exception {
        Path corpus = PrepareCommandTest.corpus(dir);
        Path run = dir.resolve("run");
        String[] args = {"quickstart", "--tiny", "--minutes", "0.2", "--dir", run.toString(), "--input", corpus.toString(),
                "--vocab-size", "300", "--eval-tokens", "200", "--code-items", "4"};
        PrepareCommandTest.Run first = PrepareCommandTest.run(args);
        assertEquals(0, first.status(), first.err());
        for (String f : new String[] {"results.md", "results.json", "loss_curves.png", "sweep/sweep.png", "sweep/sweep.md"}) {
            assertTrue(Files.size(run.resolve(f)) > 0, f);
        }
        byte[] png = Files.readAllBytes(run.resolve("loss_curves.png"));
        assertEquals((byte) 0x89, png[0]);
        assertEquals('P', png[1]);
        JsonNode rows = new ObjectMapper().readTree(Files.readString(run.resolve("results.json"))).get("rows");
        assertEquals(4, rows.size(), "dense, smoe, and ds-moe under dense and threshold");
        assertEquals("dsmoe-small", rows.get(3).get("model").asText());
        assertTrue(rows.get(3).get("strategy").asText().startsWith("threshold"));
        assertTrue(first.out().contains("| model | strategy | val ppl"), first.out());

        PrepareCommandTest.Run second = PrepareCommandTest.run(args);
        assertEquals(0, second.status(), second.err());
        assertTrue(second.err().contains("trained already"), second.err());
    }
}
