package dev.dsmoe.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Hugging Face {@code tokenizer.json} for byte-level BPE.
 *
 * <p>Written: {@code model} of type {@code BPE} ({@code vocab} in byte-level spelling, added tokens included as GPT-2 does,
 * {@code merges} as {@code "left right"} strings, no unk token, no dropout), {@code added_tokens}
 * ({@code <|endoftext|>}, special), {@code normalizer: null}, {@code pre_tokenizer} a
 * {@code Sequence} of {@code Split} (our {@link CodePreTokenizer#PATTERN}, Isolated) and
 * {@code ByteLevel} ({@code use_regex: false, add_prefix_space: false}), and a {@code ByteLevel}
 * decoder. HF tokenizers loads this file as is.
 *
 * <p>Read: BPE models whose pre-tokenizer is {@code ByteLevel} (with {@code use_regex: true} this
 * is GPT-2's split, {@link Gpt2PreTokenizer}), or a {@code Sequence} of one {@code Split} with a
 * regex (ours, GPT-2's, or any other that {@link java.util.regex} can run) and {@code ByteLevel};
 * merges as strings or as two-element arrays; {@code ignore_merges}; an {@code unk_token}.
 * Anything else (normalizers, other pre-tokenizers or models, byte fallback, subword prefixes)
 * is rejected with a one-line error naming the field.
 */
final class HfTokenizerJson {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /**
     * The ids a tokenizer.json read without a model may use. Every id up to the largest costs a
     * slot in the id table, so an unchecked id of 2^30 in a small file would claim gigabytes;
     * 2^20 is four times the largest published vocabulary (Gemma's 262,144) and its table at most
     * 8 MB. With a model, ids must lie below the model's vocab_size instead.
     */
    static final int MAX_IDS = 1 << 20;

    private HfTokenizerJson() {}

    /** Reads {@code file}; {@code modelVocab} bounds the ids (0: no model, {@link #MAX_IDS} does). */
    static Tokenizer read(Path file, int modelVocab) throws IOException {
        String text;
        try {
            byte[] bytes = Files.readAllBytes(file);
            text = new String(bytes, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(file + ": no such file");
        } catch (java.nio.file.AccessDeniedException e) {
            throw new IllegalArgumentException(file + ": not readable (permission denied)");
        }
        return parse(text, file.toString(), modelVocab);
    }

    /** A one-line error about tokenizer file {@code name}. */
    private static IllegalArgumentException bad(String name, String what) {
        return new IllegalArgumentException(name + ": not a usable tokenizer.json: " + what
                + " (expected a Hugging Face byte-level BPE tokenizer; re-create it with ./dsmoe prepare)");
    }

    static Tokenizer parse(String text, String name, int modelVocab) {
        if (modelVocab < 0) throw new IllegalArgumentException("model vocab size must be >= 0, got " + modelVocab);
        int idLimit = modelVocab > 0 ? modelVocab : MAX_IDS;
        String overLimit = modelVocab > 0
                ? "not below the model's vocab_size " + modelVocab + " (this is not the model's tokenizer)"
                : "not below the limit of " + MAX_IDS + " ids";
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (JsonProcessingException e) {
            String msg = e.getOriginalMessage();
            int nl = msg.indexOf('\n');
            throw bad(name, "invalid JSON at line " + (e.getLocation() == null ? "?" : e.getLocation().getLineNr())
                    + " (" + (nl > 0 ? msg.substring(0, nl) : msg) + ")");
        }
        if (root == null || !root.isObject()) throw bad(name, "the top level is not a JSON object");
        JsonNode model = root.get("model");
        if (model == null || !model.isObject()) throw bad(name, "no \"model\" object");
        String type = model.path("type").asText("BPE");
        if (!"BPE".equals(type)) throw bad(name, "model type " + type + " is not supported (only BPE)");
        if (!root.path("normalizer").isNull() && !root.path("normalizer").isMissingNode()) {
            throw bad(name, "normalizer " + root.get("normalizer").path("type").asText("?") + " is not supported");
        }
        if (model.path("byte_fallback").asBoolean(false)) throw bad(name, "byte_fallback is not supported");
        for (String f : new String[] {"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (model.hasNonNull(f) && !model.get(f).asText().isEmpty()) throw bad(name, f + " is not supported");
        }
        JsonNode vocab = model.get("vocab");
        if (vocab == null || !vocab.isObject() || vocab.isEmpty()) throw bad(name, "model.vocab is missing or empty");

        // added tokens
        List<Tokenizer.AddedToken> added = new ArrayList<>();
        JsonNode at = root.path("added_tokens");
        if (!at.isMissingNode() && !at.isNull()) {
            if (!at.isArray()) throw bad(name, "added_tokens is not an array");
            for (JsonNode t : at) {
                if (!t.path("id").isIntegralNumber() || !t.path("content").isTextual() || t.get("content").asText().isEmpty()) {
                    throw bad(name, "an added token lacks an integer id or a content string");
                }
                JsonNode id = t.get("id");
                String content = Chars.printable(t.get("content").asText());
                if (id.bigIntegerValue().signum() < 0) throw bad(name, "added token " + content + " has id " + id);
                if (!id.canConvertToInt() || id.asInt() >= idLimit) throw bad(name, "added token " + content + " has id " + id + ", " + overLimit);
                added.add(new Tokenizer.AddedToken(id.asInt(), t.get("content").asText(), t.path("special").asBoolean(false)));
            }
        }
        int maxId = -1;
        for (Iterator<Map.Entry<String, JsonNode>> it = vocab.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isIntegralNumber() || e.getValue().bigIntegerValue().signum() < 0) {
                throw bad(name, "vocab entry " + e.getKey() + " has id " + e.getValue() + ", not a non-negative integer");
            }
            if (!e.getValue().canConvertToInt() || e.getValue().asInt() >= idLimit) {
                throw bad(name, "vocab entry " + Chars.printable(e.getKey()) + " has id " + e.getValue() + ", " + overLimit);
            }
            maxId = Math.max(maxId, e.getValue().asInt());
        }
        for (Tokenizer.AddedToken t : added) maxId = Math.max(maxId, t.id());
        byte[][] tokenBytes = new byte[maxId + 1][];
        java.util.HashMap<String, Integer> ids = new java.util.HashMap<>(vocab.size() * 2);
        for (Iterator<Map.Entry<String, JsonNode>> it = vocab.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            int id = e.getValue().asInt();
            byte[] b = ByteLevel.decode(e.getKey());
            if (b == null) b = e.getKey().getBytes(StandardCharsets.UTF_8);
            if (tokenBytes[id] != null) throw bad(name, "vocab id " + id + " is used twice");
            tokenBytes[id] = b;
            ids.put(e.getKey(), id);
        }
        for (Tokenizer.AddedToken t : added) {
            byte[] content = t.content().getBytes(StandardCharsets.UTF_8);
            // an added token may repeat a vocab entry (GPT-2's <|endoftext|>), but not take another token's id:
            // merges producing that id would then decode to the added token's text
            if (tokenBytes[t.id()] != null && !java.util.Arrays.equals(tokenBytes[t.id()], content)) {
                throw bad(name, "added token " + Chars.printable(t.content()) + " has id " + t.id()
                        + ", which the vocab gives to " + Chars.printable(ByteLevel.encode(tokenBytes[t.id()])));
            }
            tokenBytes[t.id()] = content;
        }

        // merges
        JsonNode mergesNode = model.path("merges");
        if (!mergesNode.isArray()) throw bad(name, "model.merges is missing or not an array");
        int[][] merges = new int[mergesNode.size()][];
        int r = 0;
        for (JsonNode m : mergesNode) {
            String left;
            String right;
            if (m.isTextual()) {
                String s = m.asText();
                int sp = s.indexOf(' ');
                if (sp <= 0 || sp == s.length() - 1 || s.indexOf(' ', sp + 1) >= 0) throw bad(name, "merge " + (r + 1) + " \"" + s + "\" is not two tokens separated by a space");
                left = s.substring(0, sp);
                right = s.substring(sp + 1);
            } else if (m.isArray() && m.size() == 2 && m.get(0).isTextual() && m.get(1).isTextual()) {
                left = m.get(0).asText();
                right = m.get(1).asText();
            } else {
                throw bad(name, "merge " + (r + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
            }
            Integer a = ids.get(left);
            Integer b = ids.get(right);
            Integer c = ids.get(left + right);
            if (a == null || b == null || c == null) {
                throw bad(name, "merge " + (r + 1) + " (" + left + " " + right + ") uses a token missing from the vocab");
            }
            byte[] ab = java.util.Arrays.copyOf(tokenBytes[a], tokenBytes[a].length + tokenBytes[b].length);
            System.arraycopy(tokenBytes[b], 0, ab, tokenBytes[a].length, tokenBytes[b].length);
            if (!java.util.Arrays.equals(ab, tokenBytes[c])) {
                // e.g. one part spelled byte-level and the other not: encoding would emit a token that decodes to other text
                throw bad(name, "merge " + (r + 1) + " (" + Chars.printable(left) + " " + Chars.printable(right)
                        + ") gives token " + c + ", whose bytes are not the two parts' bytes joined");
            }
            merges[r++] = new int[] {a, b, c};
        }

        // pre-tokenizer
        JsonNode pt = root.path("pre_tokenizer");
        PreTokenizer split = null;
        JsonNode byteLevel;
        if (pt.isObject() && "ByteLevel".equals(pt.path("type").asText())) {
            byteLevel = pt;
        } else if (pt.isObject() && "Sequence".equals(pt.path("type").asText()) && pt.path("pretokenizers").isArray()
                && pt.get("pretokenizers").size() == 2
                && "Split".equals(pt.get("pretokenizers").get(0).path("type").asText())
                && "ByteLevel".equals(pt.get("pretokenizers").get(1).path("type").asText())) {
            JsonNode sp = pt.get("pretokenizers").get(0);
            byteLevel = pt.get("pretokenizers").get(1);
            if (!"Isolated".equals(sp.path("behavior").asText()) || sp.path("invert").asBoolean(false)) {
                throw bad(name, "Split behavior " + sp.path("behavior").asText() + (sp.path("invert").asBoolean(false) ? " (inverted)" : "") + " is not supported (only Isolated)");
            }
            JsonNode regex = sp.path("pattern").path("Regex");
            if (!regex.isTextual()) throw bad(name, "Split has no Regex pattern");
            String p = regex.asText();
            try {
                split = p.equals(CodePreTokenizer.PATTERN) ? CodePreTokenizer.INSTANCE
                        : p.equals(Gpt2PreTokenizer.PATTERN) ? Gpt2PreTokenizer.INSTANCE : new RegexPreTokenizer(p, name);
            } catch (IllegalArgumentException e) {
                throw bad(name, e.getMessage());
            }
            String blowUp = split instanceof RegexPreTokenizer rx ? rx.probe() : null;
            if (blowUp != null) throw new IllegalArgumentException(name + ": not a usable tokenizer.json: " + blowUp);
            if (byteLevel.path("add_prefix_space").asBoolean(false)) {
                throw bad(name, "add_prefix_space with a Split before ByteLevel is not supported");
            }
        } else {
            String desc = pt.isObject() ? pt.path("type").asText("?") : pt.isNull() || pt.isMissingNode() ? "none" : pt.toString();
            throw bad(name, "pre_tokenizer " + desc + " is not supported (only ByteLevel, or Sequence[Split, ByteLevel])");
        }
        boolean useRegex = byteLevel.path("use_regex").asBoolean(true);
        PreTokenizer pre;
        if (split == null) pre = useRegex ? Gpt2PreTokenizer.INSTANCE : new RegexPreTokenizer("(?s).+", name);
        else pre = useRegex ? new PreTokenizer.Chain(split, Gpt2PreTokenizer.INSTANCE) : split;
        JsonNode dec = root.path("decoder");
        if (!dec.isMissingNode() && !dec.isNull() && !"ByteLevel".equals(dec.path("type").asText())) {
            throw bad(name, "decoder " + dec.path("type").asText("?") + " is not supported (only ByteLevel)");
        }
        String unk = model.hasNonNull("unk_token") ? model.get("unk_token").asText() : null;
        return new Tokenizer(tokenBytes, merges, added, pre, byteLevel.path("add_prefix_space").asBoolean(false),
                model.path("ignore_merges").asBoolean(false), unk);
    }

    static String write(Tokenizer t) {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (Tokenizer.AddedToken a : t.addedTokens()) {
            ObjectNode o = added.addObject();
            o.put("id", a.id());
            o.put("content", a.content());
            o.put("single_word", false);
            o.put("lstrip", false);
            o.put("rstrip", false);
            o.put("normalized", false);
            o.put("special", a.special());
        }
        root.putNull("normalizer");
        PreTokenizer pre = t.preTokenizer();
        if (pre == Gpt2PreTokenizer.INSTANCE) {
            byteLevel(root.putObject("pre_tokenizer"), t.addPrefixSpace(), true);
        } else {
            ObjectNode seq = root.putObject("pre_tokenizer");
            seq.put("type", "Sequence");
            ArrayNode list = seq.putArray("pretokenizers");
            boolean gptAfter = pre instanceof PreTokenizer.Chain c && c.second() == Gpt2PreTokenizer.INSTANCE;
            ObjectNode sp = list.addObject();
            sp.put("type", "Split");
            sp.putObject("pattern").put("Regex", gptAfter ? ((PreTokenizer.Chain) pre).first().pattern() : pre.pattern());
            sp.put("behavior", "Isolated");
            sp.put("invert", false);
            byteLevel(list.addObject(), false, gptAfter);
        }
        root.putNull("post_processor");
        byteLevel(root.putObject("decoder"), true, true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        if (t.unkToken() == null) model.putNull("unk_token");
        else model.put("unk_token", t.unkToken());
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", t.ignoreMerges());
        ObjectNode vocab = model.putObject("vocab");
        for (int id = 0; id < t.vocabSize(); id++) {
            String s = t.tokenString(id);
            if (s != null) vocab.put(s, id);
        }
        ArrayNode merges = model.putArray("merges");
        for (int r = 0; r < t.mergeCount(); r++) {
            int[] m = t.merge(r);
            merges.add(t.tokenString(m[0]) + " " + t.tokenString(m[1]));
        }
        try {
            return JSON.writeValueAsString(root) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void byteLevel(ObjectNode o, boolean addPrefixSpace, boolean useRegex) {
        o.put("type", "ByteLevel");
        o.put("add_prefix_space", addPrefixSpace);
        o.put("trim_offsets", true);
        o.put("use_regex", useRegex);
    }
}
