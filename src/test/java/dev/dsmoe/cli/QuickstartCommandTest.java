package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.eval.Quickstart;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

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
        for (String f : new String[] {"results.md", "results.json", "loss_curves.png", "sweep/sweep.png", "sweep/sweep.md",
                "sweep/sweep-speed.png"}) {
            assertTrue(Files.size(run.resolve(f)) > 0, f);
        }
        // the sweep timed decode at each ε: a positive, finite tok/s per point, shown in the report
        JsonNode sweep = new ObjectMapper().readTree(Files.readString(run.resolve("sweep/sweep.json")));
        assertEquals(11, sweep.size(), "dense and the 10 default ε");
        for (JsonNode p : sweep) {
            double tps = p.get("decode_tok_s").asDouble();
            assertTrue(tps > 0 && Double.isFinite(tps), p.toString());
            assertEquals(8, p.get("decode_tokens").asInt(), "--tiny: the models' timing, 8 tokens after a 16-token prompt");
            assertEquals(16, p.get("decode_prompt_tokens").asInt());
        }
        String md = Files.readString(run.resolve("results.md"));
        assertTrue(md.startsWith("| model | strategy | val ppl"), md);
        assertTrue(md.contains("## DS-MoE threshold sweep") && md.contains("| decode tok/s | decode vs dense |")
                && md.contains("](sweep/sweep-speed.png)") && md.contains("](sweep/sweep.png)"), md);
        assertTrue(first.out().contains("| tokens scored | decode tok/s | decode vs dense |"), first.out());
        byte[] png = Files.readAllBytes(run.resolve("loss_curves.png"));
        assertEquals((byte) 0x89, png[0]);
        assertEquals('P', png[1]);
        JsonNode rows = new ObjectMapper().readTree(Files.readString(run.resolve("results.json"))).get("rows");
        assertEquals(4, rows.size(), "dense, smoe, and ds-moe under dense and threshold");
        assertEquals("dsmoe-small", rows.get(3).get("model").asText());
        assertTrue(rows.get(3).get("strategy").asText().startsWith("threshold"));
        // decode timed for all rows together (same-time ratios to Dense), each row its own figure
        assertTrue(first.err().contains("decode speed of all 4 rows timed together"), first.err());
        assertTrue(md.contains("decode: all rows timed together, round by round"), md);
        assertEquals(1.0, rows.get(0).get("decode_vs_dense").asDouble(), 0);
        for (JsonNode r : rows) {
            double tps = r.get("decode_tok_s").asDouble();
            assertTrue(tps > 0 && Double.isFinite(tps), r.toString());
            assertEquals(tps / rows.get(0).get("decode_tok_s").asDouble(), r.get("decode_vs_dense").asDouble(), 1e-12);
        }
        assertTrue(first.out().contains("| model | strategy | val ppl"), first.out());

        PrepareCommandTest.Run second = PrepareCommandTest.run(args);
        assertEquals(0, second.status(), second.err());
        assertTrue(second.err().contains("trained already"), second.err());
        assertTrue(first.err().contains("threshold sweep ->") && !second.err().contains("threshold sweep ->"),
                "the sweep is kept: " + second.err());
        assertTrue(second.out().contains("| tokens scored | decode tok/s | decode vs dense |"), "the kept sweep is reported");
        assertTrue(second.err().contains("decode speed of all 4 rows timed together"), "timed again, not cached: " + second.err());
    }

    /** The quickstart trains and prepares with the train and prepare verbs' defaults (it used to run those verbs). */
    @Test
    void recipeIsTheTrainAndPrepareVerbsDefaults() {
        CommandLine cl = Main.commandLine();
        CommandLine.Model.CommandSpec train = cl.getSubcommands().get("train").getCommandSpec();
        CommandLine.Model.CommandSpec prepare = cl.getSubcommands().get("prepare").getCommandSpec();
        assertEquals(Quickstart.LR, Double.parseDouble(train.findOption("--lr").defaultValue()));
        assertEquals(Quickstart.WARMUP, Long.parseLong(train.findOption("--warmup").defaultValue()));
        assertEquals(Quickstart.WEIGHT_DECAY, Double.parseDouble(train.findOption("--weight-decay").defaultValue()));
        assertEquals(Quickstart.CLIP, Double.parseDouble(train.findOption("--clip").defaultValue()));
        assertEquals(Quickstart.SEED, Long.parseLong(train.findOption("--seed").defaultValue()));
        assertEquals(Quickstart.GLOB, prepare.findOption("--glob").defaultValue());
        assertEquals(Quickstart.VAL_FRACTION, Double.parseDouble(prepare.findOption("--val-fraction").defaultValue()));
        assertEquals(Quickstart.TOKENIZER_SAMPLE_MB, Long.parseLong(prepare.findOption("--tokenizer-sample-mb").defaultValue()));
    }
}
