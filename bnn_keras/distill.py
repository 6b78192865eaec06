"""Knowledge distillation from a real-valued teacher, as in ReActNet's recipe.

The student learns from the teacher's softmax alone: the loss is the soft
cross-entropy `-sum(p_teacher * log p_student)`, with no hard-label term
(ReActNet's `DistributionLoss`, which Liu, Shen et al. keep). Metrics are still
computed against the labels, and validation evaluates the student alone.
"""

from __future__ import annotations

import os

import tensorflow as tf

__all__ = ["Distiller", "load_teacher", "soft_cross_entropy"]

_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "mobilenet_v2": "MobileNetV2",
    "efficientnet_b0": "EfficientNetB0",
}


def soft_cross_entropy(teacher_probs: tf.Tensor, student_probs: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of `-sum(p_teacher * log p_student)`.

    >>> float(soft_cross_entropy(tf.constant([[1.0, 0.0]]), tf.constant([[0.5, 0.5]])))
    0.6931...
    """
    student_probs = tf.clip_by_value(student_probs, 1e-7, 1.0)
    return tf.reduce_mean(-tf.reduce_sum(teacher_probs * tf.math.log(student_probs), axis=-1))


class Distiller(tf.keras.Model):
    """Trains `student` against `teacher`'s softmax; both output probabilities.

    Use it in place of the student in `compile` and `fit`; save, export and
    evaluate the student itself.

    Args:
        student: the model being trained.
        teacher: a frozen model with the same input and number of classes.
    """

    def __init__(self, student: tf.keras.Model, teacher: tf.keras.Model, **kwargs):
        super().__init__(**kwargs)
        if student.output_shape[-1] != teacher.output_shape[-1]:
            raise ValueError(
                "`teacher` must predict as many classes as the student; received a "
                f"teacher with {teacher.output_shape[-1]}, the student has "
                f"{student.output_shape[-1]}"
            )
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        # Built at once, so that callbacks find the student's layers before `fit`.
        self.build((None, *student.input_shape[1:]))

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def train_step(self, batch):
        x, y = batch
        teacher_probs = tf.stop_gradient(self.teacher(x, training=False))
        with tf.GradientTape() as tape:
            probs = self.student(x, training=True)
            loss = soft_cross_entropy(teacher_probs, probs) + tf.add_n(
                [tf.constant(0.0)] + self.student.losses
            )
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.compiled_metrics.update_state(y, probs)
        return {"loss": loss, **{m.name: m.result() for m in self.metrics if m.name != "loss"}}

    def test_step(self, batch):
        x, y = batch
        probs = self.student(x, training=False)
        self.compiled_loss(y, probs)
        self.compiled_metrics.update_state(y, probs)
        return {m.name: m.result() for m in self.metrics}


def load_teacher(spec: str, info) -> tf.keras.Model:
    """Loads a teacher: a saved Keras model's path, or a `tf.keras.applications` name.

    Raises:
        ValueError: `spec` is neither, the application's ImageNet weights cannot be
            had, or the teacher does not fit the data.
    """
    if os.path.exists(spec):
        teacher = tf.keras.models.load_model(spec, compile=False)
    elif spec in _APPLICATIONS:
        if info.num_classes != 1000:
            raise ValueError(
                f"`teacher` {spec!r} is an ImageNet model with 1000 classes; the dataset "
                f"{info.name!r} has {info.num_classes}. Pass a saved Keras model instead."
            )
        try:
            teacher = getattr(tf.keras.applications, _APPLICATIONS[spec])(
                weights="imagenet", input_shape=tuple(info.input_shape)
            )
        except Exception as e:  # noqa: BLE001 - the download's errors vary by cause
            raise ValueError(
                f"`teacher` {spec!r} needs its ImageNet weights, which could not be "
                f"loaded ({type(e).__name__}: {e}). Without network, save a teacher "
                "with model.save() and pass its path."
            ) from e
    else:
        raise ValueError(
            f"`teacher` must be a saved Keras model path or one of {sorted(_APPLICATIONS)}; "
            f"received: teacher={spec!r}"
        )
    if tuple(teacher.input_shape[1:]) != tuple(info.input_shape):
        raise ValueError(
            f"`teacher` takes inputs of shape {teacher.input_shape[1:]}, the dataset gives "
            f"{tuple(info.input_shape)}; received: teacher={spec!r}"
        )
    return teacher
