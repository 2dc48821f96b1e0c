package dev.dsmoe.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.dsmoe.tokenizer.Tokenizer;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code ./dsmoe tokenize}: the ids a tokenizer.json gives a text (or the text of ids). */
@Command(name = "tokenize", mixinStandardHelpOptions = true,
        description = {"Encode text with a tokenizer.json and print the ids as a JSON array (with --decode,",
                "read a JSON array of ids and print the text). <|endoftext|> in the text is the special token."})
final class TokenizeCommand implements Callable<Integer> {

    @Option(names = "--tokenizer", required = true, paramLabel = "FILE",
            description = "A tokenizer.json (from 'dsmoe prepare', a model directory, or a GPT-2-style Hugging Face file).")
    Path tokenizer;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Source source;

    static final class Source {
        @Option(names = "--text", description = "The text.") String text;
        @Option(names = "--input", paramLabel = "FILE", description = "A UTF-8 file with the text (or, with --decode, the ids).") Path input;
    }

    @Option(names = "--decode", description = "Decode a JSON array of ids instead.")
    boolean decode;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(tokenizer)) throw new NoSuchFileException(tokenizer + ": no such tokenizer.json");
        Tokenizer tok = Tokenizer.load(tokenizer);
        String text = source.text;
        if (source.input != null) {
            if (!Files.isRegularFile(source.input)) throw new NoSuchFileException(source.input + ": no such file");
            try {
                text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .decode(ByteBuffer.wrap(Files.readAllBytes(source.input))).toString();
            } catch (CharacterCodingException e) {
                throw new Errors.UserError(source.input + ": not UTF-8 text; convert it to UTF-8 first");
            }
        }
        ObjectMapper om = new ObjectMapper();
        var out = new java.io.PrintStream(System.out, true, StandardCharsets.UTF_8);
        if (decode) {
            int[] ids;
            try {
                ids = om.readValue(text, int[].class);
            } catch (Exception e) {
                throw new Errors.UserError("--decode expects a JSON array of token ids, e.g. [383, 573]");
            }
            for (int id : ids) {
                if (id < 0 || id >= tok.vocabSize()) {
                    throw new Errors.UserError("token id " + id + " is outside the tokenizer's " + tok.vocabSize() + " ids");
                }
            }
            out.print(tok.decode(ids));
            out.flush();
        } else {
            out.println(om.writeValueAsString(tok.encode(text)));
        }
        return 0;
    }
}
