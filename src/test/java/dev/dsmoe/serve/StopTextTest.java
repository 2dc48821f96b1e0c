package dev.dsmoe.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.dsmoe.tokenizer.BpeTrainer;
import dev.dsmoe.tokenizer.Tokenizer;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Stop sequences: the text is cut at the first one, and a stream never shows part of one. */
class StopTextTest {

    /** A byte-level tokenizer with no merges: one token per byte, so a stop sequence spans several tokens. */
    private static final Tokenizer BYTES = BpeTrainer.train(List.of("z"), 257, null);

    private static String stream(String text, List<String> stops) {
        StopText t = new StopText(BYTES, stops);
        StringBuilder shown = new StringBuilder();
        for (int id : BYTES.encodeOrdinary(text)) {
            shown.append(t.add(id));
            if (t.stopped()) break;
        }
        return shown.append(t.finish()).toString();
    }

    @Test
    void cutsAtTheFirstStopAndHoldsBackWhatMightStartOne() {
        assertEquals("int x = 1", stream("int x = 1;\n}\nclass", List.of("\n}", ";")));
        assertEquals("ab\n#", stream("ab\n#", List.of("\n##")), "a prefix never completed is released at the end");
        assertEquals("no stops here", stream("no stops here", List.of()));
        // while "##" might still become "###", nothing of it is shown
        StopText t = new StopText(BYTES, List.of("###"));
        StringBuilder shown = new StringBuilder();
        for (int id : BYTES.encodeOrdinary("a##")) shown.append(t.add(id));
        assertEquals("a", shown.toString());
        assertFalse(t.stopped());
        for (int id : BYTES.encodeOrdinary("#b")) shown.append(t.add(id));
        assertTrue(t.stopped());
        assertEquals("a", shown + t.finish());
    }
}
