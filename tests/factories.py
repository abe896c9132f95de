"""factory_boy factories for users; tenants and memberships are made through the services."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")

    @factory.post_generation
    def password(user: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        user.set_password(extracted or PASSWORD)
        if create:
            user.save()
