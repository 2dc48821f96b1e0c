package dev.dsmoe.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;

/**
 * The fields of a completion or chat completion request, typed and range-checked, as OpenAI
 * defines them (plus llama-server's {@code top_k} and {@code ignore_eos}, and our
 * {@code expert_selection}). Fields the server does not know are ignored; a known field of the
 * wrong type or out of range is a 400 naming it. Null means "not given" for every field.
 */
record GenerationParams(String model, Integer maxTokens, double temperature, double topP, int topK, Long seed,
                        List<String> stop, boolean echo, boolean ignoreEos, boolean stream, boolean includeUsage,
                        String expertSelection) {

    /** OpenAI's limit on stop sequences. */
    static final int MAX_STOPS = 4;

    static GenerationParams parse(ObjectNode body, boolean chat) throws ApiException {
        String model = text(body, "model");
        Integer maxTokens = integer(body, "max_tokens");
        Integer maxCompletion = chat ? integer(body, "max_completion_tokens") : null;
        if (maxTokens == null) maxTokens = maxCompletion;
        if (maxTokens != null && maxTokens < 1) throw ApiException.invalid("max_tokens", "max_tokens must be at least 1, got " + maxTokens);
        Double temperature = number(body, "temperature");
        if (temperature != null && !(temperature >= 0 && temperature <= 2)) {
            throw ApiException.invalid("temperature", "temperature must be between 0 and 2, got " + temperature);
        }
        Double topP = number(body, "top_p");
        if (topP != null && !(topP > 0 && topP <= 1)) throw ApiException.invalid("top_p", "top_p must be in (0, 1], got " + topP);
        Integer topK = integer(body, "top_k");
        if (topK != null && topK < 0) throw ApiException.invalid("top_k", "top_k must be >= 0 (0: no limit), got " + topK);
        Long seed = null;
        JsonNode s = present(body, "seed");
        if (s != null) {
            if (!s.isIntegralNumber() || !s.canConvertToLong()) throw ApiException.invalid("seed", "seed must be an integer");
            seed = s.longValue();
        }
        Integer n = integer(body, "n");
        if (n != null && n != 1) throw ApiException.invalid("n", "only n = 1 is supported, got " + n);
        Boolean echo = chat ? null : bool(body, "echo");
        JsonNode lp = present(body, chat ? "logprobs" : "logprobs");
        if (lp != null && !(lp.isBoolean() && !lp.booleanValue()) && !(lp.isIntegralNumber() && lp.intValue() == 0)) {
            throw ApiException.invalid("logprobs", "logprobs are not supported; leave the field out");
        }
        Boolean ignoreEos = bool(body, "ignore_eos");
        Boolean stream = bool(body, "stream");
        boolean includeUsage = false;
        JsonNode so = present(body, "stream_options");
        if (so != null) {
            if (!so.isObject()) throw ApiException.invalid("stream_options", "stream_options must be an object");
            Boolean iu = bool((ObjectNode) so, "include_usage");
            includeUsage = iu != null && iu;
        }
        String selection = text(body, "expert_selection");
        return new GenerationParams(model, maxTokens, temperature == null ? 1.0 : temperature, topP == null ? 1.0 : topP,
                topK == null ? 0 : topK, seed, stops(body), echo != null && echo, ignoreEos != null && ignoreEos,
                stream != null && stream, includeUsage, selection);
    }

    private static List<String> stops(ObjectNode body) throws ApiException {
        JsonNode v = present(body, "stop");
        List<String> out = new ArrayList<>();
        if (v == null) return out;
        if (v.isTextual()) {
            if (!v.textValue().isEmpty()) out.add(v.textValue());
            return out;
        }
        if (!v.isArray()) throw ApiException.invalid("stop", "stop must be a string or an array of strings");
        for (JsonNode e : v) {
            if (!e.isTextual()) throw ApiException.invalid("stop", "stop must be a string or an array of strings");
            if (!e.textValue().isEmpty()) out.add(e.textValue());
        }
        if (out.size() > MAX_STOPS) throw ApiException.invalid("stop", "at most " + MAX_STOPS + " stop sequences, got " + out.size());
        return out;
    }

    /** The field, or null when it is absent or JSON null. */
    static JsonNode present(ObjectNode body, String field) {
        JsonNode v = body.get(field);
        return v == null || v.isNull() ? null : v;
    }

    static String text(ObjectNode body, String field) throws ApiException {
        JsonNode v = present(body, field);
        if (v == null) return null;
        if (!v.isTextual()) throw ApiException.invalid(field, field + " must be a string");
        return v.textValue();
    }

    static Integer integer(ObjectNode body, String field) throws ApiException {
        JsonNode v = present(body, field);
        if (v == null) return null;
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw ApiException.invalid(field, field + " must be an integer");
        return v.intValue();
    }

    static Double number(ObjectNode body, String field) throws ApiException {
        JsonNode v = present(body, field);
        if (v == null) return null;
        if (!v.isNumber()) throw ApiException.invalid(field, field + " must be a number");
        return v.doubleValue();
    }

    static Boolean bool(ObjectNode body, String field) throws ApiException {
        JsonNode v = present(body, field);
        if (v == null) return null;
        if (!v.isBoolean()) throw ApiException.invalid(field, field + " must be true or false");
        return v.booleanValue();
    }
}
