package dev.dsmoe.dist;

/**
 * Bad input that every rank of a job found at the same point, after agreeing on it (a check whose
 * result was reduced across ranks, or a value every rank holds alike, such as the reduced loss):
 * rank 0 reports it in one line, the others end quietly, and all leave the job normally with
 * status 2. In a one-process run it is plain bad input.
 */
public final class CollectiveFailure extends IllegalArgumentException {
    public CollectiveFailure(String message) {
        super(message);
    }
}
