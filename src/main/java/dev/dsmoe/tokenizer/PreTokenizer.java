package dev.dsmoe.tokenizer;

/**
 * Splits text into pre-tokens (pieces BPE never merges across). Implementations are stateless
 * and thread-safe.
 */
public sealed interface PreTokenizer permits CodePreTokenizer, Gpt2PreTokenizer, RegexPreTokenizer, PreTokenizer.Chain {

    /** Receives one pre-token as the half-open char range {@code [start, end)} of the text. */
    @FunctionalInterface
    interface SpanSink {
        void accept(int start, int end);
    }

    /** Calls {@code sink} for each pre-token of {@code text[from, to)}, in order, covering the range. */
    void split(String text, int from, int to, SpanSink sink);

    /** A hand-written splitter's scanner: the end of the pre-token that starts at {@code i}. */
    @FunctionalInterface
    interface Scanner {
        int next(String text, int i, int end);
    }

    /** {@link #split} for a hand-written splitter: pre-tokens end to end, each ended by {@code scanner}. */
    static void scan(String text, int from, int to, Scanner scanner, SpanSink sink) {
        int i = from;
        while (i < to) {
            int j = scanner.next(text, i, to);
            sink.accept(i, j);
            i = j;
        }
    }

    /** The regex (Oniguruma / Hugging Face syntax) this pre-tokenizer implements. */
    String pattern();

    /** The pre-tokens of {@code text} as strings (for tests and debugging). */
    default java.util.List<String> pieces(String text) {
        java.util.List<String> out = new java.util.ArrayList<>();
        split(text, 0, text.length(), (s, e) -> out.add(text.substring(s, e)));
        return out;
    }

    /** Applies {@code first}, then {@code second} inside each of its pieces (HF's Sequence). */
    record Chain(PreTokenizer first, PreTokenizer second) implements PreTokenizer {
        @Override
        public void split(String text, int from, int to, SpanSink sink) {
            first.split(text, from, to, (s, e) -> second.split(text, s, e, sink));
        }

        @Override
        public String pattern() {
            return first.pattern() + " then " + second.pattern();
        }
    }
}
