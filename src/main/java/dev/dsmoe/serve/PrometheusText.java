package dev.dsmoe.serve;

import dev.dsmoe.infer.Scheduler;
import dev.dsmoe.infer.SchedulerMetrics;
import java.util.Locale;

/** A scheduler's metrics in Prometheus' text exposition format (version 0.0.4). */
final class PrometheusText {

    private PrometheusText() {}

    static String of(Scheduler scheduler) {
        SchedulerMetrics m = scheduler.metrics();
        StringBuilder b = new StringBuilder();
        gauge(b, "dsmoe_requests_running", "Requests in the running batch.", m.running());
        gauge(b, "dsmoe_requests_waiting", "Requests queued for admission.", m.waiting());
        counter(b, "dsmoe_prompt_tokens_total", "Prompt tokens prefilled (recomputed ones included).", m.promptTokens.get());
        counter(b, "dsmoe_generation_tokens_total", "Tokens generated.", m.completionTokens.get());
        counter(b, "dsmoe_steps_total", "Engine steps run.", m.steps.get());
        counter(b, "dsmoe_preemptions_total", "Requests preempted for KV cache memory (recomputed on resume).", m.preemptions.get());
        b.append("# HELP dsmoe_requests_finished_total Requests ended, by reason.\n# TYPE dsmoe_requests_finished_total counter\n");
        for (Scheduler.Finish f : Scheduler.Finish.values()) {
            b.append("dsmoe_requests_finished_total{reason=\"").append(f.name().toLowerCase(Locale.ROOT)).append("\"} ")
                    .append(m.finished(f)).append('\n');
        }
        gauge(b, "dsmoe_kv_blocks_in_use", "KV cache blocks held by sequences.", m.kvBlocksInUse());
        gauge(b, "dsmoe_kv_blocks", "KV cache blocks the server may allocate.", m.kvBlocks());
        histogram(b, "dsmoe_time_to_first_token_seconds", "Seconds from a request's arrival to its first token.", m.timeToFirstToken);
        histogram(b, "dsmoe_inter_token_latency_seconds", "Seconds between a request's consecutive tokens.", m.interTokenLatency);
        histogram(b, "dsmoe_step_seconds", "Seconds per engine step.", m.stepSeconds);
        histogram(b, "dsmoe_batch_size", "Sequences per engine step.", m.batchSize);
        experts(b, "attention", m.meanActiveAttention());
        experts(b, "mlp", m.meanActiveMlp());
        return b.toString();
    }

    private static void experts(StringBuilder b, String type, double[] perLayer) {
        String name = "dsmoe_active_experts_per_token";
        if (type.equals("attention")) {
            b.append("# HELP ").append(name).append(" Mean experts computed per token, by layer type and layer (finished requests).\n")
                    .append("# TYPE ").append(name).append(" gauge\n");
        }
        double sum = 0;
        int n = 0;
        for (int l = 0; l < perLayer.length; l++) {
            if (Double.isNaN(perLayer[l])) continue;
            b.append(name).append("{layer_type=\"").append(type).append("\",layer=\"").append(l).append("\"} ")
                    .append(num(perLayer[l])).append('\n');
            sum += perLayer[l];
            n++;
        }
        if (n > 0) b.append(name).append("{layer_type=\"").append(type).append("\",layer=\"all\"} ").append(num(sum / n)).append('\n');
    }

    private static void gauge(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static void counter(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static void histogram(StringBuilder b, String name, String help, SchedulerMetrics.Histogram h) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" histogram\n");
        double[] bounds = h.bounds();
        for (int i = 0; i < bounds.length; i++) {
            b.append(name).append("_bucket{le=\"").append(num(bounds[i])).append("\"} ").append(h.cumulative(i)).append('\n');
        }
        b.append(name).append("_bucket{le=\"+Inf\"} ").append(h.count()).append('\n');
        b.append(name).append("_sum ").append(num(h.sum())).append('\n');
        b.append(name).append("_count ").append(h.count()).append('\n');
    }

    private static String num(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : Double.toString(v);
    }
}
