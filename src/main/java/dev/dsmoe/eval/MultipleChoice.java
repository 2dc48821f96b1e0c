package dev.dsmoe.eval;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.infer.Engine;
import dev.dsmoe.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Zero-shot multiple choice scored by log-likelihood, as the LM evaluation harness does.
 *
 * <p>Each choice is scored by {@code LL = Σ log p(choice token | context, earlier choice
 * tokens)} (natural log). {@code acc} counts items whose highest-LL choice is the gold one;
 * {@code acc_norm} uses {@code LL / (UTF-8 bytes of the choice)} instead, which removes the bias
 * towards short choices (the harness divides by the choice's length in characters; the two agree
 * on ASCII text). Ties go to the first choice. Text items are tokenized like the harness does:
 * trailing whitespace of the context moves to the front of the choice, the pair is encoded
 * whole and the choice's tokens are what follows the context's own encoding (when the whole
 * encoding does not start with it, context and choice are encoded separately); an empty context
 * becomes the end-of-text token. A sequence longer than the engine's context loses its oldest
 * context tokens.
 */
public final class MultipleChoice {

    private MultipleChoice() {}

    /** One item of a JSONL file: {@code {"context": str, "choices": [str, ...], "gold": int}}. */
    public record Item(String context, List<String> choices, int gold) {
        public Item {
            Objects.requireNonNull(context, "context");
            choices = List.copyOf(choices);
            if (choices.size() < 2) throw new IllegalArgumentException("needs at least 2 choices, has " + choices.size());
            if (gold < 0 || gold >= choices.size()) {
                throw new IllegalArgumentException("gold " + gold + " is not a choice index (0.." + (choices.size() - 1) + ")");
            }
        }
    }

    /** An item as token ids; {@code choiceBytes[i]} is the length of choice i in UTF-8 bytes (for acc_norm). */
    public record TokenItem(int[] context, int[][] choices, int gold, int[] choiceBytes) {
        public TokenItem {
            if (context.length == 0) throw new IllegalArgumentException("empty context");
            if (choices.length < 2 || choiceBytes.length != choices.length) {
                throw new IllegalArgumentException("needs at least 2 choices, each with a byte length");
            }
            if (gold < 0 || gold >= choices.length) throw new IllegalArgumentException("gold " + gold + " out of range");
            for (int[] c : choices) if (c.length == 0) throw new IllegalArgumentException("empty choice");
        }
    }

    /** Log-likelihoods of one item's choices and the two predictions. */
    public record Scored(double[] logLikelihood, int prediction, int predictionNorm) {}

    /** Accuracy of a task under one selection; {@code chance} is the mean of 1/choices. */
    public record Result(String task, String selection, int items, int correct, int correctNorm, double chance,
                         double seconds) {
        public double acc() {
            return items > 0 ? (double) correct / items : Double.NaN;
        }

        public double accNorm() {
            return items > 0 ? (double) correctNorm / items : Double.NaN;
        }

        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("task", task);
            m.put("selection", selection);
            m.put("items", items);
            m.put("acc", acc());
            m.put("acc_norm", accNorm());
            m.put("chance", chance);
            m.put("seconds", seconds);
            return m;
        }
    }

    /** Called after each item: items done, of {@code total}, seconds since the start. */
    public interface Progress {
        void update(int done, int total, double seconds);

        Progress NONE = (d, t, s) -> { };
    }

    // ------------------------------------------------------------------ reading

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Reads a JSONL file of items (blank lines skipped). A bad line is an IllegalArgumentException
     * naming the file and the line number; a missing file a NoSuchFileException naming it.
     */
    public static List<Item> readJsonl(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new NoSuchFileException(file + ": no such file (the --choices JSONL)");
        List<Item> items = new ArrayList<>();
        var decoder = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        try (BufferedReader r = new BufferedReader(new java.io.InputStreamReader(Files.newInputStream(file), decoder))) {
            String line;
            int no = 0;
            while (true) {
                try {
                    line = r.readLine();
                } catch (CharacterCodingException e) {
                    throw new IllegalArgumentException(file + " line " + (no + 1) + ": not UTF-8 text");
                }
                if (line == null) break;
                no++;
                if (line.isBlank()) continue;
                try {
                    items.add(parseLine(line));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(file + " line " + no + ": " + e.getMessage()
                            + "; expected {\"context\": str, \"choices\": [str, ...], \"gold\": int}");
                }
            }
        }
        if (items.isEmpty()) throw new IllegalArgumentException(file + ": no items (expected one JSON object per line)");
        return items;
    }

    static Item parseLine(String line) {
        JsonNode n;
        try {
            n = JSON.readTree(line);
        } catch (JsonProcessingException e) {
            String m = e.getOriginalMessage();
            throw new IllegalArgumentException("not valid JSON (" + (m == null ? "parse error" : m.lines().findFirst().orElse(m)) + ")");
        }
        if (n == null || !n.isObject()) throw new IllegalArgumentException("not a JSON object");
        JsonNode ctx = n.get("context"), ch = n.get("choices"), gold = n.get("gold");
        if (ctx == null || !ctx.isTextual()) throw new IllegalArgumentException("\"context\" missing or not a string");
        if (ch == null || !ch.isArray()) throw new IllegalArgumentException("\"choices\" missing or not an array");
        if (gold == null || !gold.isIntegralNumber()) throw new IllegalArgumentException("\"gold\" missing or not an integer");
        List<String> choices = new ArrayList<>();
        for (int i = 0; i < ch.size(); i++) {
            JsonNode c = ch.get(i);
            if (!c.isTextual()) throw new IllegalArgumentException("choice " + i + " is not a string");
            if (c.asText().isEmpty()) throw new IllegalArgumentException("choice " + i + " is empty");
            choices.add(c.asText());
        }
        if (!gold.canConvertToInt()) throw new IllegalArgumentException("gold " + gold + " is not a choice index");
        return new Item(ctx.asText(), choices, gold.intValue());
    }

    // ------------------------------------------------------------------ tokenizing

    /** Token ids of an item (see the class comment). */
    public static TokenItem tokenize(Item item, Tokenizer tok) {
        String context = item.context();
        int cut = context.length();
        while (cut > 0 && Character.isWhitespace(context.charAt(cut - 1))) cut--;
        String moved = context.substring(cut);
        context = context.substring(0, cut);
        int[] ctx = tok.encodeOrdinary(context);
        int[][] choices = new int[item.choices().size()][];
        int[] bytes = new int[choices.length];
        for (int i = 0; i < choices.length; i++) {
            String choice = moved + item.choices().get(i);
            int[] whole = tok.encodeOrdinary(context + choice);
            int[] cont = whole.length > ctx.length && Arrays.equals(whole, 0, ctx.length, ctx, 0, ctx.length)
                    ? Arrays.copyOfRange(whole, ctx.length, whole.length) : tok.encodeOrdinary(choice);
            if (cont.length == 0) throw new IllegalArgumentException("choice " + i + " encodes to no tokens");
            choices[i] = cont;
            bytes[i] = item.choices().get(i).getBytes(StandardCharsets.UTF_8).length;
        }
        if (ctx.length == 0) {
            int eot = tok.endOfTextId();
            if (eot < 0) throw new IllegalArgumentException("an empty context needs an end-of-text token, the tokenizer has none");
            ctx = new int[] {eot};
        }
        return new TokenItem(ctx, choices, item.gold(), bytes);
    }

    // ------------------------------------------------------------------ scoring

    /** Sum of the log-probabilities of {@code choice} after {@code context} (truncated on the left to fit). */
    public static double logLikelihood(Engine engine, int[] context, int[] choice) {
        int cap = engine.contextLength();
        if (choice.length >= cap) {
            throw new IllegalArgumentException("a choice of " + choice.length + " tokens does not fit, with context, in "
                    + cap + " positions");
        }
        int keep = Math.min(context.length, cap - choice.length);
        int[] seq = new int[keep + choice.length];
        System.arraycopy(context, context.length - keep, seq, 0, keep);
        System.arraycopy(choice, 0, seq, keep, choice.length);
        double[] lp = engine.score(seq);
        double ll = 0;
        for (int i = keep - 1; i < lp.length; i++) ll += lp[i];
        return ll;
    }

    /** Scores every choice of an item under the engine's selection. */
    public static Scored score(Engine engine, TokenItem item) {
        int n = item.choices().length;
        double[] ll = new double[n], norm = new double[n];
        for (int i = 0; i < n; i++) {
            ll[i] = logLikelihood(engine, item.context(), item.choices()[i]);
            norm[i] = ll[i] / Math.max(1, item.choiceBytes()[i]);
        }
        return new Scored(ll, argmax(ll), argmax(norm));
    }

    /** Accuracy over {@code items} under the engine's current selection. */
    public static Result evaluate(String task, Engine engine, List<TokenItem> items, Progress progress) {
        long t0 = System.nanoTime();
        int correct = 0, correctNorm = 0;
        double chance = 0;
        for (int i = 0; i < items.size(); i++) {
            TokenItem it = items.get(i);
            Scored s = score(engine, it);
            if (s.prediction() == it.gold()) correct++;
            if (s.predictionNorm() == it.gold()) correctNorm++;
            chance += 1.0 / it.choices().length;
            progress.update(i + 1, items.size(), (System.nanoTime() - t0) / 1e9);
        }
        return new Result(task, engine.selection().toString(), items.size(), correct, correctNorm,
                items.isEmpty() ? Double.NaN : chance / items.size(), (System.nanoTime() - t0) / 1e9);
    }

    /** Index of the largest value; the first on ties. */
    public static int argmax(double[] a) {
        int best = 0;
        for (int i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
        return best;
    }
}
