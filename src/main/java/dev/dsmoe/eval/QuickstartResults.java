package dev.dsmoe.eval;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonUnwrapped;
import dev.dsmoe.bench.InferenceBenchmarks;
import dev.dsmoe.model.ModelConfig;
import dev.dsmoe.model.ParamCounts;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** The typed results of the {@link Quickstart}'s stages, and the table results.md shows. */
public final class QuickstartResults {

    private QuickstartResults() {}

    /** The evaluate stage for one model and strategy: validation perplexity, and the code task (null without one). */
    public record Evaluation(Perplexity.Result perplexity, MultipleChoice.Result code) {}

    /**
     * One model under one strategy, as quickstart-eval.json keeps it: its evaluation, sizes and
     * speed. The JSON names are those of results.json.
     */
    public record Measurement(
            @JsonProperty("model") String model,
            @JsonProperty("strategy") String strategy,
            @JsonProperty("val_loss") double valLoss,
            @JsonProperty("val_ppl") double valPpl,
            @JsonProperty("val_tokens") long valTokens,
            @JsonProperty("code_acc") double codeAcc,
            @JsonProperty("code_acc_norm") double codeAccNorm,
            @JsonProperty("code_items") int codeItems,
            @JsonProperty("total_params") long totalParams,
            @JsonProperty("non_embedding_params") long nonEmbeddingParams,
            @JsonProperty("active_params_per_token") double activeParamsPerToken,
            @JsonProperty("active_attention_experts") double activeAttentionExperts,
            @JsonProperty("active_mlp_experts") double activeMlpExperts,
            @JsonProperty("active_hidden_pct") double activeHiddenPct,
            @JsonProperty("prefill_tok_s") double prefillTokensPerSecond,
            @JsonProperty("decode_tok_s") double decodeTokensPerSecond) {

        static Measurement of(String model, ModelConfig c, Evaluation e, InferenceBenchmarks.Row speed) {
            Perplexity.Result p = e.perplexity();
            MultipleChoice.Result mc = e.code();
            ParamCounts counts = ParamCounts.of(c);
            return new Measurement(model, p.selection(), p.loss(), p.perplexity(), p.tokensScored(),
                    mc == null ? Double.NaN : mc.acc(), mc == null ? Double.NaN : mc.accNorm(), mc == null ? 0 : mc.items(),
                    counts.total(), counts.nonEmbedding(), p.stats().activeParamsPerToken(), p.stats().meanActiveAttention(),
                    p.stats().meanActiveMlp(), p.stats().activeHiddenPercent(), speed.prefillTokensPerSecond(),
                    speed.decodeTokensPerSecond());
        }

        /** This measurement with another decode speed (the quickstart's rows timed together). */
        Measurement withDecode(double tokensPerSecond) {
            return new Measurement(model, strategy, valLoss, valPpl, valTokens, codeAcc, codeAccNorm, codeItems, totalParams,
                    nonEmbeddingParams, activeParamsPerToken, activeAttentionExperts, activeMlpExperts, activeHiddenPct,
                    prefillTokensPerSecond, tokensPerSecond);
        }
    }

    /** A row of the results: a measurement and its decode speed relative to Dense's. */
    public record Row(@JsonUnwrapped Measurement measurement, @JsonProperty("decode_vs_dense") double decodeVsDense) {}

    /** What results.json holds: the rows, and each model's greedy completion of {@link Quickstart#PROMPT}. */
    public record Results(List<Row> rows, Map<String, String> completions) {}

    /**
     * The report stage's files (the sweep's directory among them), the table results.md holds,
     * and the sweep's section below it (its table with the decode speed columns, and its plots;
     * empty without a sweep).
     */
    public record Report(Path resultsMd, Path resultsJson, Path lossCurves, Path sweep, String table, String sweepTable) {}

    /** The paper-style table of the rows (Markdown). */
    static String table(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| model | strategy | val ppl | code acc | params (non-emb.) | active params/token | active hidden | prefill tok/s | decode tok/s | decode vs Dense |\n");
        sb.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (Row row : rows) {
            Measurement r = row.measurement();
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.2f | %.1f%% | %.2fM (%.2fM) | %.2fM | %.0f%% | %.0f | %.0f | %.2f |%n",
                    r.model(), r.strategy(), r.valPpl(), 100 * r.codeAcc(), r.totalParams() / 1e6,
                    r.nonEmbeddingParams() / 1e6, r.activeParamsPerToken() / 1e6, r.activeHiddenPct(),
                    r.prefillTokensPerSecond(), r.decodeTokensPerSecond(), row.decodeVsDense()));
        }
        return sb.toString();
    }
}
