package dev.dsmoe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import dev.langchain4j.model.output.FinishReason;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LangChain4j's OpenAI chat models, the JVM client users reach for, pointed at the server with
 * nothing but a base URL, a key and a model name (no {@code expert_selection}, none of our
 * fields): a plain call and a streamed one both get the reply, its finish reason and its usage.
 */
class LangChain4jClientTest {

    @TempDir
    static Path dir;
    static TinyServer served;
    static final List<ChatMessage> MESSAGES = List.of(SystemMessage.from("You write Java."), UserMessage.from("class"));

    @BeforeAll
    static void start() throws Exception {
        served = TinyServer.start(dir);
    }

    @AfterAll
    static void stop() throws Exception {
        if (served != null) served.close();
    }

    @Test
    void plainAndStreamingChatModelsGetTheSameReply() throws Exception {
        ChatResponse plain = OpenAiChatModel.builder().baseUrl(served.base + "/v1").apiKey(TinyServer.API_KEY)
                .modelName(TinyServer.MODEL_ID).temperature(0.0).maxTokens(6).timeout(Duration.ofSeconds(60)).maxRetries(0).build()
                .chat(MESSAGES);
        String text = plain.aiMessage().text();
        assertNotNull(text, plain.toString());
        assertFalse(text.isEmpty(), plain.toString());
        assertTrue(plain.id().startsWith("chatcmpl-"), plain.toString());
        assertEquals(TinyServer.MODEL_ID, plain.modelName());
        assertTrue(plain.finishReason() == FinishReason.LENGTH || plain.finishReason() == FinishReason.STOP, plain.toString());
        assertTrue(plain.tokenUsage().inputTokenCount() > 0, plain.toString());
        assertTrue(plain.tokenUsage().outputTokenCount() > 0 && plain.tokenUsage().outputTokenCount() <= 6, plain.toString());
        assertEquals(plain.tokenUsage().inputTokenCount() + plain.tokenUsage().outputTokenCount(), plain.tokenUsage().totalTokenCount());

        StringBuilder partials = new StringBuilder();
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        OpenAiStreamingChatModel.builder().baseUrl(served.base + "/v1").apiKey(TinyServer.API_KEY).modelName(TinyServer.MODEL_ID)
                .temperature(0.0).maxTokens(6).timeout(Duration.ofSeconds(60)).build()
                .chat(MESSAGES, new StreamingChatResponseHandler() {
                    @Override
                    public void onPartialResponse(String partial) {
                        partials.append(partial);
                    }

                    @Override
                    public void onCompleteResponse(ChatResponse r) {
                        done.complete(r);
                    }

                    @Override
                    public void onError(Throwable e) {
                        done.completeExceptionally(e);
                    }
                });
        ChatResponse streamed = done.get(120, TimeUnit.SECONDS);
        assertEquals(text, streamed.aiMessage().text(), "the stream's reply is the plain call's (greedy)");
        assertEquals(text, partials.toString(), "the partial responses add up to the reply");
        assertEquals(plain.finishReason(), streamed.finishReason());
        assertEquals(plain.modelName(), streamed.modelName());
        assertNotNull(streamed.tokenUsage(), "the stream reports usage: " + streamed);
        assertEquals(plain.tokenUsage().inputTokenCount(), streamed.tokenUsage().inputTokenCount());
        assertEquals(plain.tokenUsage().outputTokenCount(), streamed.tokenUsage().outputTokenCount());
    }
}
